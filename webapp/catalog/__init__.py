"""The catalog's shared vocabulary: what a garment is and how shoppers filter it."""
