"""The data path, one module per stage: data -> encode (cache) -> folds -> evaluate -> report; :mod:`.run` ties them."""
