package kube

import (
	"bytes"
	"fmt"
	"io/fs"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// RenderTemplate executes a Go template of Kubernetes manifests from fsys with data; a key
// missing from data is an error, so a typo never renders an empty field.
func RenderTemplate(fsys fs.FS, name string, data any) ([]byte, error) {
	src, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New(name).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// RenderObjects renders a manifest template and decodes it into objects.
func RenderObjects(fsys fs.FS, name string, data any) ([]*unstructured.Unstructured, error) {
	out, err := RenderTemplate(fsys, name, data)
	if err != nil {
		return nil, err
	}
	objs, err := Decode(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return objs, nil
}
