//! backend-slurm
