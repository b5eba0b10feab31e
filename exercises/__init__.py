"""The messenger: the complete reference application that the course builds, stage by stage."""
