package wire_test

import (
	"testing"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/api/wire"
	"google.golang.org/protobuf/encoding/protowire"
)

// TestFieldNumbers: every field of every message in api/predict.proto has its constant
// here with the descriptor's number, and there is no constant for a field the .proto
// does not have.
func TestFieldNumbers(t *testing.T) {
	want := map[string]protowire.Number{
		"Feature.name":                    wire.FeatureName,
		"Feature.value":                   wire.FeatureValue,
		"Feature.values":                  wire.FeatureValues,
		"Feature.label":                   wire.FeatureLabel,
		"Key.name":                        wire.KeyName,
		"Key.value":                       wire.KeyValue,
		"Candidate.id":                    wire.CandidateID,
		"Candidate.features":              wire.CandidateFeatures,
		"Candidate.keys":                  wire.CandidateKeys,
		"Row.values":                      wire.RowValues,
		"PredictRequest.model":            wire.RequestModel,
		"PredictRequest.version":          wire.RequestVersion,
		"PredictRequest.context":          wire.RequestContext,
		"PredictRequest.candidates":       wire.RequestCandidates,
		"PredictRequest.rows":             wire.RequestRows,
		"PredictRequest.output":           wire.RequestOutput,
		"PredictRequest.keys":             wire.RequestKeys,
		"Prediction.id":                   wire.PredictionID,
		"Prediction.score":                wire.PredictionScore,
		"Prediction.scores":               wire.PredictionScores,
		"PredictResponse.model":           wire.ResponseModel,
		"PredictResponse.version":         wire.ResponseVersion,
		"PredictResponse.predictions":     wire.ResponsePredictions,
		"PredictResponse.degraded":        wire.ResponseDegraded,
		"PredictResponse.degraded_groups": wire.ResponseDegradedGroups,
		"Error.code":                      wire.ErrorCode,
		"Error.message":                   wire.ErrorMessage,
		"ErrorResponse.error":             wire.ErrorResponseError,
	}
	seen := 0
	msgs := predictpb.File_predict_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		m := msgs.Get(i)
		fields := m.Fields()
		for j := 0; j < fields.Len(); j++ {
			f := fields.Get(j)
			name := string(m.Name()) + "." + string(f.Name())
			n, ok := want[name]
			switch {
			case !ok:
				t.Errorf("%s (field %d) has no constant in package wire", name, f.Number())
			case n != f.Number():
				t.Errorf("%s is field %d in predict.proto, %d in package wire", name, f.Number(), n)
			default:
				seen++
			}
		}
	}
	if seen != len(want) {
		t.Errorf("package wire names %d fields, predict.proto has %d of them", len(want), seen)
	}
}
