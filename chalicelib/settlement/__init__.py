"""Settlement: two-sided statements per period (``statements``, pure), their run on Step Functions
(``runs``), what each party may fetch (``exports``); operating data (``operating``)."""
