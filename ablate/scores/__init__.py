"""Head scores: relation index, copying and prefix matching, SIH selection and matched random controls."""
