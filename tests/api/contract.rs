//! Checks the served API against openapi/openapi.yaml.
