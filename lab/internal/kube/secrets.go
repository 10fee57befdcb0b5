package kube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// secrets are the files kube-apiserver is started with, made fresh for each
// control plane with Go's crypto (no openssl needed): a CA and the serving
// certificate it signed for 127.0.0.1, the service-account key pair, and a
// token file with one user, the admin, in system:masters.
type secrets struct {
	caFile, certFile, keyFile string
	saPublic, saPrivate       string
	tokenFile, token          string
}

func writeSecrets(dir string) (secrets, error) {
	s := secrets{
		caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "apiserver.crt"), keyFile: filepath.Join(dir, "apiserver.key"),
		saPublic: filepath.Join(dir, "sa.pub"), saPrivate: filepath.Join(dir, "sa.key"), tokenFile: filepath.Join(dir, "tokens.csv"),
	}
	caKey, ca, err := newCA()
	if err != nil {
		return s, err
	}
	if err := writePEM(s.caFile, "CERTIFICATE", ca.Raw); err != nil {
		return s, err
	}
	if err := writeServingCert(s.certFile, s.keyFile, ca, caKey); err != nil {
		return s, err
	}
	if err := writeKeyPair(s.saPublic, s.saPrivate); err != nil {
		return s, err
	}
	random := make([]byte, 16)
	rand.Read(random)
	s.token = hex.EncodeToString(random)
	return s, os.WriteFile(s.tokenFile, []byte(s.token+`,admin,admin,"system:masters"`+"\n"), 0o600)
}

func newCA() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	template := certificate("minttl-lab-ca")
	template.IsCA, template.BasicConstraintsValid = true, true
	template.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return key, ca, err
}

// writeServingCert writes a certificate for 127.0.0.1 (and the names the
// kubernetes Service would give the API server) signed by ca.
func writeServingCert(certFile, keyFile string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	template := certificate("kube-apiserver")
	template.KeyUsage = x509.KeyUsageDigitalSignature
	template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	template.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	template.DNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return err
	}
	return writePrivate(keyFile, key)
}

// writeKeyPair writes the service-account signing key and its public half.
func writeKeyPair(public, private string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(public, "PUBLIC KEY", der); err != nil {
		return err
	}
	return writePrivate(private, key)
}

func certificate(name string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

func writePrivate(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}
