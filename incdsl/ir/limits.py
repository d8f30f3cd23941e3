"""The bounds lowering keeps, in one place: lowering and the size estimate both read them."""

# Lowering and checking take about 35 us and 2 KB per layer: 100,000 layers check in a few
# seconds and well under 1 GB. Real networks have hundreds of layers (the largest shipped
# spec: 336; Inception-v4: 196). A repetition or block call that makes no layer counts as one,
# so `repeat 0` inside `repeat 99999` cannot do unbounded work either.
MAX_LAYERS = 100_000
MAX_NODES = MAX_LAYERS  # the former name
NAME_CHARS_PER_LAYER = 200  # scoped names such as `mixed_5b.branch_1.conv_2` take about 30
VALUES_PER_LAYER = 20  # Inception blocks take up to 10 parameters and make 5 to 20 layers
SIZE_CAP = 10 ** 15  # estimates stop growing here: they only need to exceed the limit
LIMIT_HINT = ("raise the limit with `--max-layers N` (`load(..., max_layers=N)`) "
              "if the network is meant to be this large")
MAX_CALL_DEPTH = 64  # blocks within blocks: real networks nest a few deep; each level takes Python stack
MAX_NESTING = 128  # bodies within bodies (blocks, branches, clauses): about 3.5 frames of Python stack each
