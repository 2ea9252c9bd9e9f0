package onnx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// tensorProto is a TensorProto with a name and, when loc is set, its data in the
// external file loc.
func tensorProto(name, loc string) []byte {
	b := protowire.AppendTag(nil, tensorName, protowire.BytesType)
	b = protowire.AppendString(b, name)
	if loc != "" {
		var e []byte
		e = protowire.AppendTag(e, entryKey, protowire.BytesType)
		e = protowire.AppendString(e, "location")
		e = protowire.AppendTag(e, entryValue, protowire.BytesType)
		e = protowire.AppendString(e, loc)
		b = protowire.AppendTag(b, tensorExternalData, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
		b = protowire.AppendTag(b, tensorDataLocation, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b
}

func field(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func TestExternalTensor(t *testing.T) {
	// Every zoo model but external_data keeps its tensors inline.
	files, err := filepath.Glob(filepath.Join("testdata", "zoo", "*.onnx"))
	if err != nil || len(files) < 10 {
		t.Fatal(files, err)
	}
	for _, f := range append(files, modelPath("mlp"), modelPath("emb")) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name, loc, ok := externalTensor(data)
		if want := strings.HasSuffix(f, "external_data.onnx"); ok != want {
			t.Errorf("%s: external = %v (%q in %q), want %v", f, ok, name, loc, want)
		} else if want && (name != "w" || loc != "weights.bin") {
			t.Errorf("%s: tensor %q in %q, want w in weights.bin", f, name, loc)
		}
	}
	// Where exporters put tensors: a Constant node's value inside an If branch, and the
	// values of a sparse initializer.
	inner := field(graphNode, field(nodeAttribute, field(attrT, tensorProto("c", "c.bin"))))
	nested := field(modelGraph, append(field(graphInitializer, tensorProto("inline", "")),
		field(graphNode, field(nodeAttribute, field(attrG, inner)))...))
	if name, loc, ok := externalTensor(nested); !ok || name != "c" || loc != "c.bin" {
		t.Errorf("nested: %q %q %v", name, loc, ok)
	}
	sparse := field(modelGraph, field(graphSparseInitializer, field(sparseValues, tensorProto("s", "s.bin"))))
	if name, _, ok := externalTensor(sparse); !ok || name != "s" {
		t.Errorf("sparse: %q %v", name, ok)
	}
	// Deeper than maxProtoDepth is not scanned (ONNX Runtime judges such a file).
	deep := field(attrT, tensorProto("d", "d.bin"))
	for range maxProtoDepth {
		deep = field(nodeAttribute, field(attrG, field(graphNode, deep)))
	}
	if _, _, ok := externalTensor(field(modelGraph, field(graphNode, deep))); ok {
		t.Error("a tensor nested past maxProtoDepth was scanned")
	}
	// Malformed bytes report nothing.
	for _, b := range [][]byte{nil, {0xff}, {0x3a, 0x10, 0x01}, field(modelGraph, []byte{0x2a, 0x7f})} {
		if _, _, ok := externalTensor(b); ok {
			t.Errorf("%x: reported external data", b)
		}
	}
}

// FuzzExternalTensor: the scan of model bytes for external data never panics.
func FuzzExternalTensor(f *testing.F) {
	for _, name := range []string{"external_data", "if_width", "tree_multi", "zipmap"} {
		data, err := os.ReadFile(zooPath(name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(field(modelGraph, field(graphSparseInitializer, field(sparseValues, tensorProto("s", "s.bin")))))
	f.Fuzz(func(t *testing.T, data []byte) {
		externalTensor(data)
	})
}

// TestExternalTensorNotEchoed: a tensor name and file name that are not short, plain
// tokens (the model's own bytes) appear in the load error by their length only.
func TestExternalTensorNotEchoed(t *testing.T) {
	secret := "root:x:0:0:root:/root:/bin/bash " + strings.Repeat("A", 200)
	data := field(modelGraph, field(graphInitializer, tensorProto(secret, secret+".bin")))
	_, err := LoadData("m.onnx", data, Config{}, []string{"a"})
	if err == nil || !strings.Contains(err.Error(), "external data file") {
		t.Fatalf("got %v, want the external-data refusal", err)
	}
	if strings.Contains(err.Error(), "root:x") || strings.Contains(err.Error(), "AAAA") {
		t.Errorf("the error echoes the model's bytes: %v", err)
	}
}
