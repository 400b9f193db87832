"""hierre_jax: probe and align the hierarchical geometry of CLIP-like models in JAX/Flax."""
import setuptools

setuptools.setup(
    name="hierre_jax",
    version="0.1.0",
    description="Radial Embedding (RE) probing and fine-tuning of vision-language dual encoders "
                "(CLIP, open_clip, SigLIP, ALIGN, MERU) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["hierre_jax", "hierre_jax.*"]),
    package_data={"hierre_jax": ["assets/*"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.6", "flax>=0.10", "optax>=0.2.4", "orbax-checkpoint>=0.11",
        "transformers>=4.45", "safetensors>=0.4", "ml_collections>=0.1.1", "numpy>=1.26",
        "tqdm", "tensorboardX>=2.6", "pillow>=10", "matplotlib>=3.7", "scipy>=1.11",
        "ftfy>=6",  # OpenAI-style text cleaning of MERU and open_clip (models/clip/cleaned_tokenizer.py)
        "sentencepiece>=0.2", "protobuf>=3.20",  # SigLIP's tokenizer (models/siglip/tokenizer.py)
    ],
    extras_require={
        # PyTorch is only needed for parity tests, benchmarks, pytorch_model.bin files and MERU's
        # .pth checkpoints.
        "torch": ["torch>=2.1"],
        "tfds": ["tensorflow-datasets>=4.9", "array-record"],
        # Viewing the metrics each run writes under <workdir>/tensorboard.
        "tensorboard": ["tensorboard>=2.14"],
        # Centroid hierarchies (hierre_jax.hierarchy): WordNet, clustering measures, UMAP.
        "hierarchy": ["nltk>=3.8", "scikit-learn>=1.3", "umap-learn>=0.5"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "torch>=2.1", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29",
                 "tensorflow-datasets>=4.9", "array-record", "nltk>=3.8", "scikit-learn>=1.3",
                 "umap-learn>=0.5",
                 # A second opinion on the Lorentz maths (tests/test_meru.py).
                 "geoopt>=0.5"],
    },
)
