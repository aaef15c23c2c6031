"""normlab: reproduce the normalization-in-ResNets and BiLSTM-CRF NER studies.

Data flows one way: files -> ``normlab.data`` -> tensors -> ``normlab.models``
-> ``normlab.train`` (a run directory: config, metrics, checkpoints)
-> ``normlab.study`` (grids of runs and the report).
"""

__version__ = "0.1.0"
