# Corpus roots. Nothing is downloaded at run time: point these at your copies.
#   LIBRISPEECH: the folder that holds LibriSpeech/{train-clean-100,...,test-other}
#   LIBRISPEECH_LM_TEXT: librispeech-lm-norm.txt(.gz), the 800M-word unpaired text
LIBRISPEECH=${LIBRISPEECH:-/data/librispeech}
LIBRISPEECH_LM_TEXT=${LIBRISPEECH_LM_TEXT:-$LIBRISPEECH/librispeech-lm-norm.txt.gz}
