"""``Datum`` and ``DatasetBase``: the data set contract of Dassl."""
from __future__ import annotations

import random
from collections import defaultdict


class Datum:
    """One sample: image path, integer label, domain index and class name."""

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        if not isinstance(impath, str):
            raise TypeError(f"impath must be a str, got {type(impath).__name__}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return f"Datum({self._impath!r}, label={self._label}, classname={self._classname!r})"


class DatasetBase:
    """Holds ``train_x``, ``train_u``, ``val`` and ``test`` lists of :class:`Datum`."""

    dataset_dir = ""
    domains: list[str] = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None) -> None:
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        source = train_x if train_x else test
        self._num_classes = self.get_num_classes(source)
        self._lab2cname, self._classnames = self.get_lab2cname(source)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source) -> int:
        return max(item.label for item in data_source) + 1 if data_source else 0

    @staticmethod
    def get_lab2cname(data_source):
        container = {item.label: item.classname for item in data_source or []}
        labels = sorted(container)
        mapping = {label: container[label] for label in labels}
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains, target_domains) -> None:
        for domain in list(source_domains) + list(target_domains):
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def generate_fewshot_dataset(self, *data_sources, num_shots: int = -1, repeat: bool = False):
        """Sample ``num_shots`` items per class from each source (all of a class when it has fewer,
        or with replacement when ``repeat``). Uses Python's ``random``; seed it for reproducibility."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            tracker = self.split_dataset_by_label(data_source)
            dataset = []
            for _, items in tracker.items():
                if len(items) >= num_shots:
                    sampled = random.sample(items, num_shots)
                elif repeat:
                    sampled = random.choices(items, k=num_shots)
                else:
                    sampled = items
                dataset.extend(sampled)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def split_dataset_by_label(data_source) -> dict[int, list[Datum]]:
        output: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    @staticmethod
    def split_dataset_by_domain(data_source) -> dict[int, list[Datum]]:
        output: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
