package scaler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inference-sandbox/sandbox/internal/pki"
)

// Object names shared with KEDA (facts §3.2): KEDA finds the client certificate through
// the ClusterTriggerAuthentication, which resolves Secrets in KEDA's own namespace, so the
// scaler runs there too.
const (
	ServerSecretName = "keda-kaito-scaler-server-certs"
	ClientSecretName = "keda-kaito-scaler-client-certs"
	AuthName         = "keda-kaito-scaler-creds"
	ServiceName      = "keda-kaito-scaler-svc"
	GRPCPort         = 10450
)

// Validity as upstream's chart: CA ten years, leaves five.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 5 * 365 * 24 * time.Hour
	// renewBefore: stored certificates closer than this to expiry are replaced.
	renewBefore = 30 * 24 * time.Hour
)

// ServerDNSNames are the names KEDA may dial the scaler's Service by.
func ServerDNSNames(namespace string) []string {
	base := ServiceName + "." + namespace
	return []string{ServiceName, base, base + ".svc", base + ".svc.cluster", base + ".svc.cluster.local"}
}

// Address is the scalerAddress the ScaledObjects carry.
func Address(namespace string) string {
	return fmt.Sprintf("%s.%s.svc.cluster.local:%d", ServiceName, namespace, GRPCPort)
}

// EnsureCertificates makes sure both Secrets hold a CA, a server certificate for the Service
// and a client certificate for KEDA, all valid for a while yet, and returns the server TLS
// configuration (mutual TLS: only clients holding a certificate from this CA get in). Stored
// certificates are reused, so a restart does not break KEDA's pooled connections.
func EnsureCertificates(ctx context.Context, c client.Client, namespace string) (*tls.Config, error) {
	for attempt := 0; ; attempt++ {
		cfg, err := ensureCertificates(ctx, c, namespace)
		// Two scaler replicas starting together race on the Secrets; the loser re-reads.
		if (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) && attempt < 5 {
			continue
		}
		return cfg, err
	}
}

func ensureCertificates(ctx context.Context, c client.Client, namespace string) (*tls.Config, error) {
	server, serverFound, err := getSecret(ctx, c, namespace, ServerSecretName)
	if err != nil {
		return nil, err
	}
	clientSec, clientFound, err := getSecret(ctx, c, namespace, ClientSecretName)
	if err != nil {
		return nil, err
	}
	if certificatesValid(server.Data, clientSec.Data, namespace) != nil {
		if server.Data, clientSec.Data, err = IssueCertificates(namespace); err != nil {
			return nil, err
		}
		// Client first: a server certificate without a matching client one is never published.
		if err := putSecret(ctx, c, clientSec, clientFound); err != nil {
			return nil, err
		}
		if err := putSecret(ctx, c, server, serverFound); err != nil {
			return nil, err
		}
	}
	return ServerTLSConfig(server.Data)
}

// IssueCertificates makes a new CA, the server certificate for the scaler's Service and the
// client certificate for KEDA, as the data of the two Secrets.
func IssueCertificates(namespace string) (server, clientData map[string][]byte, err error) {
	ca, err := pki.NewCA("keda-kaito-scaler-ca", caValidity)
	if err != nil {
		return nil, nil, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, nil, err
	}
	srv, err := ca.Issue(ServiceName, ServerDNSNames(namespace), pki.Server, leafValidity)
	if err != nil {
		return nil, nil, err
	}
	cli, err := ca.Issue("keda", nil, pki.Client, leafValidity)
	if err != nil {
		return nil, nil, err
	}
	server = map[string][]byte{"ca.crt": ca.CertPEM, "ca.key": caKey, "tls.crt": srv.CertPEM, "tls.key": srv.KeyPEM}
	clientData = map[string][]byte{"ca.crt": ca.CertPEM, "tls.crt": cli.CertPEM, "tls.key": cli.KeyPEM}
	return server, clientData, nil
}

// ServerTLSConfig is the gRPC server's TLS from the server Secret's data: mutual TLS, so only
// clients holding a certificate from the same CA get in (upstream: RequireAndVerifyClientCert).
func ServerTLSConfig(server map[string][]byte) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(server["tls.crt"], server["tls.key"])
	if err != nil {
		return nil, fmt.Errorf("loading the server certificate from Secret %s: %w", ServerSecretName, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(server["ca.crt"]) {
		return nil, fmt.Errorf("no CA certificate in Secret %s", ServerSecretName)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

func certificatesValid(server, clientData map[string][]byte, namespace string) error {
	ca := server["ca.crt"]
	if err := pki.Valid(server["tls.crt"], ca, pki.Server, ServiceName+"."+namespace+".svc.cluster.local", renewBefore); err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if _, err := tls.X509KeyPair(server["tls.crt"], server["tls.key"]); err != nil {
		return fmt.Errorf("server key: %w", err)
	}
	if string(clientData["ca.crt"]) != string(ca) {
		return errors.New("client Secret carries another CA")
	}
	if err := pki.Valid(clientData["tls.crt"], ca, pki.Client, "", renewBefore); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if _, err := tls.X509KeyPair(clientData["tls.crt"], clientData["tls.key"]); err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	return nil
}

func getSecret(ctx context.Context, c client.Client, namespace, name string) (*corev1.Secret, bool, error) {
	s := &corev1.Secret{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s)
	switch {
	case apierrors.IsNotFound(err):
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name,
			Labels: map[string]string{"app.kubernetes.io/name": "keda-kaito-scaler"}}}, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	return s, true, nil
}

func putSecret(ctx context.Context, c client.Client, s *corev1.Secret, exists bool) error {
	var err error
	if exists {
		err = c.Update(ctx, s)
	} else {
		err = c.Create(ctx, s)
	}
	if err != nil {
		return fmt.Errorf("writing Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// EnsureTriggerAuthentication applies the ClusterTriggerAuthentication that hands KEDA the
// CA and client certificate (facts §3.2: the binary has owned it since v0.5.1).
func EnsureTriggerAuthentication(ctx context.Context, c client.Client) error {
	cta := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{
			"secretTargetRef": []any{
				map[string]any{"parameter": "caCert", "name": ServerSecretName, "key": "ca.crt"},
				map[string]any{"parameter": "tlsClientCert", "name": ClientSecretName, "key": "tls.crt"},
				map[string]any{"parameter": "tlsClientKey", "name": ClientSecretName, "key": "tls.key"},
			},
		},
	}}
	cta.SetGroupVersionKind(ClusterTriggerAuthenticationGVK)
	cta.SetName(AuthName)
	cta.SetLabels(map[string]string{"app.kubernetes.io/managed-by": ManagedByValue})
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(cta), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying ClusterTriggerAuthentication %s: %w", AuthName, err)
	}
	return nil
}
