"""Training data: the face / non-face windows (`faces`)."""
