package infer

// CheckSpeculativeDistribution exports testSpeculativeDistribution to the
// external test package (distilled_test.go), whose drafts come from packages
// that import infer.
var CheckSpeculativeDistribution = testSpeculativeDistribution
