# The embedded corpus: synthesized by stage 0 into ./corpus in the LibriSpeech layout.
LIBRISPEECH=$PWD/corpus
LIBRISPEECH_LM_TEXT=$PWD/corpus/librispeech-lm-norm.txt.gz
