"""Resource collection: processes, Docker containers and the host, sampled into resources.csv."""

from capacity.collect.docker_source import DockerSource, connect_docker
from capacity.collect.process_source import HostSource, ProcessSource
from capacity.collect.sampler import Sampler
from capacity.collect.samples import ResourceSample, Source
from capacity.runfolder.resources import (
    ALL_COLUMNS,
    COLUMNS,
    ResourceWriter,
    merge_resource_files,
    read_resources,
)

__all__ = [
    "ALL_COLUMNS",
    "COLUMNS",
    "DockerSource",
    "HostSource",
    "ProcessSource",
    "ResourceSample",
    "ResourceWriter",
    "Sampler",
    "Source",
    "connect_docker",
    "merge_resource_files",
    "read_resources",
]
