// Package api holds predictd's wire format (predict.proto); the generated Go types live
// in api/predictpb. Regenerate them with `go generate ./api` (needs protoc and
// protoc-gen-go v1.36.12 on PATH).
package api

//go:generate protoc --proto_path=. --go_out=predictpb --go_opt=paths=source_relative predict.proto
