"""Defines neither a Wrapper class nor wrapper functions."""

VALUE = 1
