"""The data set formats: each indexes its folder, reads its images and labels, and checks
everything (Kaggle layout; nnU-Net v2 raw, Decathlon and 2D image folders)."""
