"""The classical baseline of a multi-input table: gradient-boosted trees on the tabular columns plus TF-IDF of each
text column (word 1-2-grams, sublinear tf), the TF-IDF reduced to ``components`` dimensions by truncated SVD (LSA)
fitted on the training rows — the trees need dense columns, and 20,000 sparse TF-IDF columns densified would not
fit in memory. Same task, same head, same tabular handling as the fusion model; only the text features differ."""

from __future__ import annotations

import numpy as np

from graftkit.data.roles import Roles
from graftkit.fusion.encoders import column_values
from graftkit.fusion.featurize import Featurizer


class ClassicalFusion:
    def __init__(self, task, *, components: int = 128, seed: int = 0, tabular: bool = True, text: bool = True,
                 **head_params):
        self.task, self.components, self.seed = task, components, seed
        self.use_tabular, self.use_text, self.head_params = tabular, text, head_params

    def _text_columns(self, table) -> list[str]:
        return [c for c, m in table.roles.media if m == "text"] if self.use_text else []

    def fit(self, table) -> ClassicalFusion:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.text_ = {}
        for column in self._text_columns(table):
            tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20000, sublinear_tf=True)
            matrix = tfidf.fit_transform(column_values(table, column, "text"))
            k = int(min(self.components, matrix.shape[1] - 1, len(table) - 1))
            self.text_[column] = (tfidf, TruncatedSVD(n_components=k, random_state=self.seed).fit(matrix))
        tabular = Roles(numeric=table.roles.numeric, categorical=table.roles.categorical) if self.use_tabular else Roles()
        self.tabular_ = Featurizer(tabular, {}, layout="trees")
        X = self._matrix(table, fit=True)
        self.head_ = self.task.fit_head(X, self.task.encode(table), head="gbdt", seed=self.seed,
                                        categorical=self.mask_, **self.head_params)
        return self

    def _matrix(self, table, fit: bool = False) -> np.ndarray:
        blocks = [svd.transform(tfidf.transform(column_values(table, c, "text"))) for c, (tfidf, svd) in self.text_.items()]
        mask = [False] * sum(b.shape[1] for b in blocks)
        if self.tabular_.roles.columns:
            tab = self.tabular_.fit_transform(table) if fit else self.tabular_.transform(table)
            blocks.append(tab)
            mask += list(self.tabular_.categorical_mask)
        self.mask_ = np.array(mask, dtype=bool)
        return np.concatenate(blocks, axis=1)

    def raw_outputs(self, table) -> np.ndarray:
        return self.head_.logits(self._matrix(table))
