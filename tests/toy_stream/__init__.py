"""A toy third stream, for the test that adding a stream is a package plus a registration
(tests/test_third_stream.py). It is a real, if trivial, detector: a level's distance from the
training mean in training standard deviations."""
