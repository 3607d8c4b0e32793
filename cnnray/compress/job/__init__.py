"""`cnnray compress` as a job: candidates made by the plain-PyTorch methods of `cnnray.compress`, checked
against the source version, fine-tuned through `cnnray.run` where a method needs training, registered."""
