"""Helpers the tests share: fixtures, inputs, processes and checks, each written once."""
