package pki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

func TestIssueChainsAndRoundTrips(t *testing.T) {
	ca, err := NewCA("test-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue("svc", []string{"svc.ns.svc", "svc.ns.svc.cluster.local"}, Server, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := Valid(srv.CertPEM, ca.CertPEM, Server, "svc.ns.svc", time.Minute); err != nil {
		t.Fatalf("server cert: %v", err)
	}
	if err := Valid(srv.CertPEM, ca.CertPEM, Server, "other.ns.svc", time.Minute); err == nil {
		t.Fatal("server cert accepted for a name it does not carry")
	}
	if err := Valid(srv.CertPEM, ca.CertPEM, Server, "svc.ns.svc", 2*time.Hour); err == nil {
		t.Fatal("server cert accepted past its expiry")
	}
	cli, err := ca.Issue("client", nil, Client, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := Valid(cli.CertPEM, ca.CertPEM, Client, "", time.Minute); err != nil {
		t.Fatalf("client cert: %v", err)
	}
	if err := Valid(cli.CertPEM, ca.CertPEM, Server, "", time.Minute); err == nil {
		t.Fatal("client cert accepted as a server cert")
	}
	if _, err := tls.X509KeyPair(cli.CertPEM, cli.KeyPEM); err != nil {
		t.Fatalf("client pair: %v", err)
	}

	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadCA(ca.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := again.Issue("svc", []string{"svc"}, Server, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := Valid(leaf.CertPEM, ca.CertPEM, Server, "svc", 0); err != nil {
		t.Fatalf("cert from reloaded CA: %v", err)
	}
	if _, err := LoadCA(leaf.CertPEM, leaf.KeyPEM); err == nil {
		t.Fatal("a leaf loaded as a CA")
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca, err := NewCA("short", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue("x", []string{"x"}, Server, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatalf("leaf expires %v after CA %v", leaf.NotAfter, ca.Cert.NotAfter)
	}
}
