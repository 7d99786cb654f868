// Package externalscaler holds the Go bindings of KEDA's external-scaler gRPC protocol,
// generated from externalscaler.proto (protoc from Debian's protobuf-compiler,
// protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.5.1).
package externalscaler

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative externalscaler.proto
