"""Scale-out proof on one machine: real Prometheus, real replicas, the Kubernetes HPA algorithm."""
