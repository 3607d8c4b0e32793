"""Ray clusters cnnray starts or talks to: the local one `cnnray train` starts, multi-node clusters, job submission."""
