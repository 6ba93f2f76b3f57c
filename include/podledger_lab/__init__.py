"""podledger's lab: a synthetic cluster (OpenMetrics + CUR 2.0 + truth), a local stack (Prometheus, S3 on loopback)
and the demo. Used by the demo, the tests and the benchmarks; the product (``podledger``) never imports it."""
