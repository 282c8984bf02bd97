"""Search: text to image, photo to image, and more like this."""
