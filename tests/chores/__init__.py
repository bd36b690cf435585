"""A kind of background job that exists only in the tests: a subclass and nothing more."""
