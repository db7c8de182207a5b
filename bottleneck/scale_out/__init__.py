"""Scale out on Apache Beam: bottleneck creation and batch classification as pipelines."""
