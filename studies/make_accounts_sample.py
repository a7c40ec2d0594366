"""Write ``studies/accounts_sample.csv.gz``: 200 synthetic member accounts (not real member data).

Drawn by :func:`marginlab.models.synthetic_accounts` from the reference strategies over 2022-01-01 ..
2024-12-31 on the bundled daily data (BTC, ETH, SOL, XRP; BTC/ETH DVOL for the options):

    python studies/make_accounts_sample.py        # seed 20261122, 200 accounts
"""

from pathlib import Path

from marginlab.datasets import load_market
from marginlab.models import synthetic_accounts

if __name__ == "__main__":
    market = load_market(["BTC", "ETH", "SOL", "XRP"])
    table = synthetic_accounts(200, seed=20261122, market=market, start="2022-01-01", end="2024-12-31")
    out = table.to_file(Path(__file__).with_name("accounts_sample.csv.gz"))
    print(f"{out}: {len(table)} rows, {len(table.accounts)} accounts")
