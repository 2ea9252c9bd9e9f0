package onnx

import "google.golang.org/protobuf/encoding/protowire"

// Field numbers of onnx.proto (ONNX IR) on the path from a model to its tensors.
const (
	modelGraph = 7 // ModelProto.graph

	graphNode              = 1  // GraphProto.node
	graphInitializer       = 5  // GraphProto.initializer
	graphSparseInitializer = 15 // GraphProto.sparse_initializer

	nodeAttribute = 5 // NodeProto.attribute

	attrT             = 5  // AttributeProto.t
	attrG             = 6  // AttributeProto.g
	attrTensors       = 10 // AttributeProto.tensors
	attrGraphs        = 11 // AttributeProto.graphs
	attrSparseTensor  = 22 // AttributeProto.sparse_tensor
	attrSparseTensors = 23 // AttributeProto.sparse_tensors

	sparseValues  = 1 // SparseTensorProto.values
	sparseIndices = 2 // SparseTensorProto.indices

	tensorName         = 8  // TensorProto.name
	tensorExternalData = 13 // TensorProto.external_data (key/value entries)
	tensorDataLocation = 14 // TensorProto.data_location; 1 = EXTERNAL

	entryKey   = 1 // StringStringEntryProto.key
	entryValue = 2 // StringStringEntryProto.value
)

// maxProtoDepth bounds the nesting scanned (graphs inside If/Loop attributes), so a
// hostile file cannot recurse without end.
const maxProtoDepth = 32

// externalTensor finds the first tensor of a serialized ONNX model whose data lives in an
// external file, and returns its name and the file it names. A model loaded from its
// bytes has no directory to resolve such files against, and ONNX Runtime's own error for
// it is obscure (sometimes "model_path must not be empty"), so Load says what to do
// instead. It reads only the fields on the way to tensors; a malformed file reports
// nothing (ONNX Runtime then explains what is wrong with it).
func externalTensor(model []byte) (name, location string, ok bool) {
	var found bool
	walkFields(model, 0, func(num protowire.Number, v []byte) bool {
		if num == modelGraph {
			name, location, found = scanGraph(v, 1)
		}
		return !found
	})
	return name, location, found
}

// walkFields calls fn for each length-delimited field of msg until fn returns false; it stops
// at the first malformed field.
func walkFields(msg []byte, depth int, fn func(protowire.Number, []byte) bool) {
	if depth > maxProtoDepth {
		return
	}
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return
		}
		msg = msg[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return
			}
			msg = msg[m:]
			if !fn(num, v) {
				return
			}
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return
		}
		msg = msg[m:]
	}
}

func scanGraph(g []byte, depth int) (name, location string, found bool) {
	walkFields(g, depth, func(num protowire.Number, v []byte) bool {
		switch num {
		case graphInitializer:
			name, location, found = scanTensor(v)
		case graphSparseInitializer:
			name, location, found = scanSparse(v, depth+1)
		case graphNode:
			walkFields(v, depth+1, func(num protowire.Number, attr []byte) bool {
				if num == nodeAttribute {
					name, location, found = scanAttribute(attr, depth+2)
				}
				return !found
			})
		}
		return !found
	})
	return name, location, found
}

func scanAttribute(a []byte, depth int) (name, location string, found bool) {
	walkFields(a, depth, func(num protowire.Number, v []byte) bool {
		switch num {
		case attrT, attrTensors:
			name, location, found = scanTensor(v)
		case attrG, attrGraphs:
			name, location, found = scanGraph(v, depth+1)
		case attrSparseTensor, attrSparseTensors:
			name, location, found = scanSparse(v, depth+1)
		}
		return !found
	})
	return name, location, found
}

func scanSparse(s []byte, depth int) (name, location string, found bool) {
	walkFields(s, depth, func(num protowire.Number, v []byte) bool {
		if num == sparseValues || num == sparseIndices {
			name, location, found = scanTensor(v)
		}
		return !found
	})
	return name, location, found
}

// scanTensor reports a TensorProto whose data_location is EXTERNAL, with its name and
// the external_data entry "location".
func scanTensor(t []byte) (name, location string, external bool) {
	for len(t) > 0 {
		num, typ, n := protowire.ConsumeTag(t)
		if n < 0 {
			return "", "", false
		}
		t = t[n:]
		switch {
		case num == tensorDataLocation && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(t)
			if m < 0 {
				return "", "", false
			}
			t = t[m:]
			external = external || v == 1
			continue
		case num == tensorName && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(t)
			if m < 0 {
				return "", "", false
			}
			t = t[m:]
			name = string(v)
			continue
		case num == tensorExternalData && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(t)
			if m < 0 {
				return "", "", false
			}
			t = t[m:]
			var key, val string
			walkFields(v, 0, func(num protowire.Number, b []byte) bool {
				switch num {
				case entryKey:
					key = string(b)
				case entryValue:
					val = string(b)
				}
				return true
			})
			if key == "location" {
				location = val
			}
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, t)
		if m < 0 {
			return "", "", false
		}
		t = t[m:]
	}
	return name, location, external
}
