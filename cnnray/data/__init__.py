"""Data: sources -> Parquet shards -> loaders (in-memory tensors, or Ray Data streaming) and batch transforms."""

from cnnray.data.describe import describe_dataset, load_arrays, resolve_loader_kind
from cnnray.data.info import DatasetInfo, SplitArrays, check_num_classes
from cnnray.data.memory_loader import MemoryLoader
from cnnray.data.mix import MixupCutmix
from cnnray.data.streaming import StreamingLoader, build_streaming_datasets
from cnnray.data.transforms import BatchTransform, build_transforms
from cnnray.data.uri import absolute_data_path

__all__ = [
    "BatchTransform", "DatasetInfo", "MemoryLoader", "MixupCutmix", "SplitArrays", "StreamingLoader",
    "absolute_data_path", "build_streaming_datasets", "build_transforms", "check_num_classes",
    "describe_dataset", "load_arrays", "resolve_loader_kind",
]
