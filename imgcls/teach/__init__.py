"""Teaching material: concept cards, and the code behind what a person did in the app."""
