//! The sample MSP's clients, as every system of the sandbox knows them, and the seeded
//! random stream that generates them. A crate of its own so that the sample internal
//! database (a plugin) and the emulators (linked into other plugins' tests) share it
//! without linking one plugin into another.

use serde::{Deserialize, Serialize};

/// One client of the sample MSP as every system knows it. The internal database's
/// `client_profiles` and the sandbox's SuperOps and QuickBooks emulators are generated
/// from the same roster, so one client can be followed across all three sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterClient {
    /// `client_profiles.id`.
    pub id: i64,
    /// `client_profiles.company_name`.
    pub company_name: String,
    /// The client's `accountId` in SuperOps (a 19-digit id), if it is there.
    pub superops_account_id: Option<String>,
    /// The client's customer `Id` in QuickBooks, if it is there.
    pub quickbooks_customer_id: Option<String>,
}

/// First SuperOps account id of the sample roster: ids are this plus the profile id.
pub const SUPEROPS_ACCOUNT_BASE: u64 = 7_928_838_372_746_000_000;

/// The clients of the sample MSP of `seed` with `clients` profiles, in id order: the same
/// list the generator writes to `client_profiles`. About 2% are missing from SuperOps and
/// 5% from QuickBooks, as in real life.
pub fn roster(seed: u64, clients: u32) -> Vec<RosterClient> {
    (0..u64::from(clients)).map(|i| identity(seed, i)).collect()
}

/// Row `i`'s identity: its own random stream, so the rest of the row can change without
/// changing who the client is.
pub fn identity(seed: u64, i: u64) -> RosterClient {
    let mut rng = Rng::new(seed, "client_identity", i);
    let id = i as i64 + 1;
    let name = format!("{} {}", rng.pick(&NAME_A), rng.pick(&NAME_B));
    let suffix = rng.pick(&["LLC", "Inc.", "Group", "Partners", "Ltd"]);
    RosterClient {
        id,
        company_name: format!("{name} {suffix}"),
        superops_account_id: (!rng.chance(2))
            .then(|| (SUPEROPS_ACCOUNT_BASE + id as u64).to_string()),
        quickbooks_customer_id: (!rng.chance(5)).then(|| id.to_string()),
    }
}

/// First words of the sample clients' names.
pub const NAME_A: [&str; 16] = [
    "Northwind",
    "Bluebird",
    "Summit",
    "Cedar",
    "Harbor",
    "Ironwood",
    "Maple",
    "Silverline",
    "Redrock",
    "Lakeside",
    "Granite",
    "Brightpath",
    "Evergreen",
    "Pioneer",
    "Riverbend",
    "Oakridge",
];

/// Second words of the sample clients' names.
pub const NAME_B: [&str; 12] = [
    "Dental",
    "Law",
    "Logistics",
    "Accounting",
    "Manufacturing",
    "Realty",
    "Clinic",
    "Builders",
    "Foods",
    "Consulting",
    "Academy",
    "Outfitters",
];

/// SplitMix64: tiny, fast, and fully determined by its seed (no dependency whose stream
/// could change between versions).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, table: &str, row: u64) -> Rng {
        // One independent stream per (seed, table, row): rows can be generated in any
        // order or in parallel and still come out identical.
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in table.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        let mut r = Rng(h ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// Picks by weight: `(item, weight)` pairs.
    pub fn weighted<'a>(&mut self, items: &[(&'a str, u64)]) -> &'a str {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.below(total);
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        items[0].0
    }
}
