"""marshmallow schemas: they validate requests AND write the OpenAPI spec."""
