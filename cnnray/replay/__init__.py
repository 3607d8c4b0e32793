"""`cnnray replay`: rebuild a registered version's training from its lineage and judge the result against it."""
