"""Feature sources: concept directions fitted on a lexicon, and SAEs imported from
SAELens/Neuronpedia files."""
