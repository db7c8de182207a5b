"""The user's images: find the classes, split them, decode any image file, distort, digest."""
