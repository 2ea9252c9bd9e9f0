// Package wire is what every encoder and decoder of predictd's wire format shares: the
// protobuf field numbers of api/predict.proto and the JSON append helpers. The sidecar,
// the Go client and the load generator all read and write bodies through it, so the
// format is defined once. A test checks the field numbers against the compiled
// descriptor in api/predictpb, so they cannot drift from the .proto.
package wire

import "google.golang.org/protobuf/encoding/protowire"

// Field numbers of api/predict.proto, named message then field.
const (
	FeatureName   protowire.Number = 1
	FeatureValue  protowire.Number = 2 // optional double: absent is missing
	FeatureValues protowire.Number = 3 // packed doubles: a whole vector feature
	FeatureLabel  protowire.Number = 4 // string: a category label

	KeyName  protowire.Number = 1
	KeyValue protowire.Number = 2

	CandidateID       protowire.Number = 1
	CandidateFeatures protowire.Number = 2
	CandidateKeys     protowire.Number = 3

	RowValues protowire.Number = 1 // packed doubles

	RequestModel      protowire.Number = 1
	RequestVersion    protowire.Number = 2
	RequestContext    protowire.Number = 3
	RequestCandidates protowire.Number = 4
	RequestRows       protowire.Number = 5
	RequestOutput     protowire.Number = 6
	RequestKeys       protowire.Number = 7

	PredictionID     protowire.Number = 1
	PredictionScore  protowire.Number = 2
	PredictionScores protowire.Number = 3 // packed doubles, multi-output models only

	ResponseModel          protowire.Number = 1
	ResponseVersion        protowire.Number = 2
	ResponsePredictions    protowire.Number = 3
	ResponseDegraded       protowire.Number = 4
	ResponseDegradedGroups protowire.Number = 5

	ErrorCode    protowire.Number = 1
	ErrorMessage protowire.Number = 2

	ErrorResponseError protowire.Number = 1
)
