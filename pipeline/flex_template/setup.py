"""The package Dataflow workers need: the service clients (endpoints), the event model and the pipeline, nothing else
(no Faker, rich, click).

Copied beside endpoints/, eventmodel/ and pipeline/ by pipeline/flex_template/Dockerfile; the versions match
pyproject.toml.
"""

import setuptools

setuptools.setup(
    name="event-workbench-pipeline",
    version="0.1.0",
    packages=setuptools.find_packages(
        include=["endpoints", "endpoints.*", "eventmodel", "eventmodel.*", "pipeline", "pipeline.*"]
    ),
    install_requires=["apache-beam[gcp,aws]==2.77.0", "orjson>=3.10,<4"],
    python_requires=">=3.11,<3.13",
)
