package config

// tinyPresets returns the small models that moe trains on two CPU cores:
// tiny, a sparse MoE that learns in minutes, and tiny-draft, a dense model
// far cheaper per token that drafts for tiny in speculative decoding (it
// shares tiny's vocabulary). Each call builds fresh values.
func tinyPresets() map[string]*Config {
	return map[string]*Config{
		"tiny": {
			ModelType:             TypeMixtral,
			VocabSize:             4096,
			HiddenSize:            256,
			IntermediateSize:      512,
			NumLayers:             4,
			NumHeads:              8,
			NumKVHeads:            4,
			MaxPositionEmbeddings: 256,
			RopeTheta:             10000,
			RMSNormEps:            1e-5,
			TieWordEmbeddings:     true,
			NumExperts:            8,
			ExpertsPerToken:       2,
			RouterAuxLossCoef:     0.01,
			Routing:               RoutingTokenChoice,
			RouterOrder:           RouterTopKSoftmax,
			RouterZLossCoef:       0.001,
			InitStd:               0.02,
			HiddenAct:             "silu",
		},
		"tiny-draft": {
			ModelType:             TypeMixtral,
			VocabSize:             4096,
			HiddenSize:            64,
			IntermediateSize:      192,
			NumLayers:             3,
			NumHeads:              2,
			NumKVHeads:            1,
			MaxPositionEmbeddings: 256,
			RopeTheta:             10000,
			RMSNormEps:            1e-5,
			TieWordEmbeddings:     true,
			InitStd:               0.02,
			HiddenAct:             "silu",
		},
	}
}
