"""augbench: reproducible data-augmentation studies."""
