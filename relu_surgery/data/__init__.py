"""Datasets on disk: file readers (IDX, CIFAR batches, SVHN) and the dataset registry."""
