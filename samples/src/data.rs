//! Deterministic synthetic public datasets of a Huzhou-like city: a population register, an
//! enterprise register, monthly electricity use and monthly social-insurance contributions
//! (社保缴费). Fake, but with checksum-valid identifiers (resident ID, USCC, mobile, bank card),
//! skewed realistic distributions, correlations between registers, and small groups (so
//! threshold rules have work to do).
//!
//! The same seed always gives the same bytes.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use unseen_policy::identifiers::{luhn_check_digit, resident_id_check_char, uscc_check_char};

/// Why synthetic data could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be created or written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Parquet encoding failed.
    #[error("encoding parquet: {0}")]
    Parquet(String),
}

/// Districts of Huzhou with administrative codes and population weights.
const DISTRICTS: &[(&str, &str, u32)] = &[
    ("吴兴区", "330502", 30),
    ("南浔区", "330503", 18),
    ("德清县", "330521", 17),
    ("长兴县", "330522", 22),
    ("安吉县", "330523", 13),
];

/// Industries with weights (strongly skewed) and electricity intensity (kWh per employee-month).
const INDUSTRIES: &[(&str, u32, f64)] = &[
    ("纺织业", 26, 900.0),
    ("金属制品业", 16, 1400.0),
    ("批发和零售业", 15, 120.0),
    ("电气机械和器材制造业", 12, 800.0),
    ("非金属矿物制品业", 9, 2600.0),
    ("住宿和餐饮业", 8, 300.0),
    ("信息技术服务业", 5, 150.0),
    ("化学原料和化学制品制造业", 4, 3200.0),
    ("木材加工业", 3, 700.0),
    ("农副食品加工业", 2, 600.0),
];

const SURNAMES: &[&str] =
    &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "沈", "朱", "钱", "姚", "潘", "费"];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀", "霞", "平",
    "刚", "桂", "英", "华", "建", "国", "文", "嘉", "浩",
];
const NAME_WORDS: &[&str] =
    &["恒", "丰", "华", "盛", "鑫", "达", "远", "新", "宏", "永", "安", "泰", "吉", "祥", "美", "湖", "诚", "信"];
const NAME_TRADES: &[&str] =
    &["纺织", "科技", "电气", "建材", "贸易", "机械", "化工", "食品", "木业", "服饰", "实业", "新材料"];
const USCC_ORG: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// SplitMix64: small, fast, and good enough for synthetic data.
#[derive(Debug, Clone)]
struct Random(u64);

impl Random {
    fn new(seed: u64, stream: u64) -> Self {
        Self(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal via Box–Muller.
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u32 = items.iter().map(|(_, weight)| weight).sum();
        let mut pick = self.below(u64::from(total)) as u32;
        for (item, weight) in items {
            if pick < *weight {
                return *item;
            }
            pick -= weight;
        }
        items[items.len() - 1].0
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn district(random: &mut Random) -> (&'static str, &'static str) {
    let index = random
        .weighted(&DISTRICTS.iter().enumerate().map(|(index, (_, _, weight))| (index, *weight)).collect::<Vec<_>>());
    (DISTRICTS[index].0, DISTRICTS[index].1)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A population register: `person_id` (subject), `id_card` (GB 11643-valid), `name`, `sex`,
/// `birth_year`, `district`.
pub fn population(rows: usize, seed: u64) -> RecordBatch {
    let mut random = Random::new(seed, 1);
    let (mut ids, mut cards, mut names, mut sexes, mut years, mut districts) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for row in 0..rows {
        let (district_name, code) = district(&mut random);
        // Ages skewed to working ages: a triangular mix around 1975–1995.
        let year = (1940 + ((random.below(69) + random.below(69)) / 2) as i32).clamp(1940, 2008);
        let month = 1 + random.below(12) as u32;
        let day = 1 + random.below(u64::from(days_in_month(year, month))) as u32;
        let male = random.below(2) == 0;
        let sequence = (random.below(500) * 2 + u64::from(male)) as u32 % 1000;
        let first17 = format!("{code}{year:04}{month:02}{day:02}{sequence:03}");
        let check = resident_id_check_char(first17.as_bytes()).map(char::from).unwrap_or('0');
        ids.push(format!("P{:08}", row + 1));
        cards.push(format!("{first17}{check}"));
        let given: String = (0..1 + random.below(2)).map(|_| random.pick(GIVEN)).collect();
        names.push(format!("{}{given}", random.pick(SURNAMES)));
        sexes.push(if male { "M" } else { "F" });
        years.push(year);
        districts.push(district_name);
    }
    let schema = Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("id_card", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("sex", DataType::Utf8, false),
        Field::new("birth_year", DataType::Int32, false),
        Field::new("district", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(cards)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(sexes)),
            Arc::new(Int32Array::from(years)),
            Arc::new(StringArray::from(districts)),
        ],
    )
    .expect("columns match the schema")
}

/// An enterprise register: `uscc` (subject, GB 32100-valid), `name`, `industry`, `district`,
/// `employees`, `registered_capital` (10k yuan).
pub fn enterprises(rows: usize, seed: u64) -> RecordBatch {
    let mut random = Random::new(seed, 2);
    let industry_weights: Vec<(usize, u32)> =
        INDUSTRIES.iter().enumerate().map(|(index, (_, weight, _))| (index, *weight)).collect();
    let (mut usccs, mut names, mut industries, mut districts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut employee_counts, mut capitals) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    while usccs.len() < rows {
        let (district_name, code) = district(&mut random);
        let industry = random.weighted(&industry_weights);
        let org: String = (0..9).map(|_| USCC_ORG[random.below(USCC_ORG.len() as u64) as usize] as char).collect();
        let first17 = format!("91{code}{org}");
        let Some(check) = uscc_check_char(first17.as_bytes()) else { continue };
        let uscc = format!("{first17}{}", check as char);
        if !seen.insert(uscc.clone()) {
            continue;
        }
        let employees = (8.0 * (1.1 * random.normal()).exp()).round().clamp(1.0, 20_000.0) as i32;
        let capital = (200.0 * (1.3 * random.normal()).exp() * 100.0).round() / 100.0;
        let words: String = (0..2).map(|_| random.pick(NAME_WORDS)).collect();
        usccs.push(uscc);
        names.push(format!("湖州{words}{}有限公司", random.pick(NAME_TRADES)));
        industries.push(INDUSTRIES[industry].0);
        districts.push(district_name);
        employee_counts.push(employees);
        capitals.push(capital);
    }
    let schema = Schema::new(vec![
        Field::new("uscc", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("industry", DataType::Utf8, false),
        Field::new("district", DataType::Utf8, false),
        Field::new("employees", DataType::Int32, false),
        Field::new("registered_capital", DataType::Float64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(usccs)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(industries)),
            Arc::new(StringArray::from(districts)),
            Arc::new(Int32Array::from(employee_counts)),
            Arc::new(Float64Array::from(capitals)),
        ],
    )
    .expect("columns match the schema")
}

/// Monthly electricity use of every enterprise: `uscc`, `month` (`2025-01`…), `kwh`. Use
/// follows industry intensity × employees with a seasonal swing and noise; a few enterprises
/// are very large consumers, so dominance rules have something to find.
pub fn electricity(enterprises: &RecordBatch, months: u32, seed: u64) -> RecordBatch {
    let mut random = Random::new(seed, 3);
    let usccs = enterprises.column(0).as_string::<i32>();
    let industries = enterprises.column(2).as_string::<i32>();
    let employees = enterprises.column(4).as_primitive::<Int32Type>();
    let rows = usccs.len() * months as usize;
    let (mut ids, mut month_names, mut kwh) =
        (Vec::with_capacity(rows), Vec::with_capacity(rows), Vec::with_capacity(rows));
    for row in 0..usccs.len() {
        let intensity = INDUSTRIES
            .iter()
            .find(|(name, _, _)| *name == industries.value(row))
            .map(|(_, _, kwh)| *kwh)
            .unwrap_or(500.0);
        let giant = if random.below(200) == 0 { 40.0 } else { 1.0 };
        let base = intensity * f64::from(employees.value(row)) * giant * (0.3 * random.normal()).exp();
        for month in 0..months {
            let season = 1.0 + 0.18 * ((f64::from(month % 12) - 6.5) / 12.0 * 2.0 * std::f64::consts::PI).cos();
            let value = (base * season * (1.0 + 0.05 * random.normal())).max(0.0);
            ids.push(usccs.value(row).to_string());
            month_names.push(format!("{}-{:02}", 2025 + month / 12, month % 12 + 1));
            kwh.push((value * 10.0).round() / 10.0);
        }
    }
    let schema = Schema::new(vec![
        Field::new("uscc", DataType::Utf8, false),
        Field::new("month", DataType::Utf8, false),
        Field::new("kwh", DataType::Float64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(month_names)),
            Arc::new(Float64Array::from(kwh)),
        ],
    )
    .expect("columns match the schema")
}

/// Monthly contribution bases of Zhejiang's social insurance, yuan: the floor and ceiling.
const CONTRIBUTION_BASE: (f64, f64) = (4_462.0, 24_930.0);
/// Pension contributions, employer and employee together, as a share of the base.
const PENSION_RATE: f64 = 0.24;
/// Mobile prefixes (China Mobile, Unicom, Telecom).
const MOBILE_PREFIXES: &[&str] = &["134", "135", "138", "139", "150", "158", "186", "187", "133", "153", "177", "189"];
/// Debit card BINs of large banks.
const CARD_BINS: &[&str] = &["621700", "622848", "621226", "622202", "621483", "623668"];

/// The columns of [`social_insurance`] as they are generated.
#[derive(Default)]
struct ContributionRows {
    person_ids: Vec<String>,
    mobiles: Vec<String>,
    bank_cards: Vec<String>,
    employers: Vec<String>,
    months: Vec<String>,
    bases: Vec<f64>,
    pensions: Vec<f64>,
}

/// Monthly social-insurance contributions (社保缴费) of the working-age people of `population`
/// who are employed by one of `enterprises`: `person_id` (subject), `mobile` and `bank_card`
/// (identifiers: an 11-digit mobile, a Luhn-valid 19-digit debit card), `employer_uscc`,
/// `month`, `contribution_base` and `pension_paid` (yuan). About three in four people born
/// 1965–2004 are employed, each by an enterprise drawn in proportion to its employees; bases
/// follow the employer's industry (higher in IT and chemicals, lower in retail and catering),
/// clamped to the provincial floor and ceiling, with a raise each January.
pub fn social_insurance(population: &RecordBatch, enterprises: &RecordBatch, months: u32, seed: u64) -> RecordBatch {
    let mut random = Random::new(seed, 4);
    let people = population.column(0).as_string::<i32>();
    let birth_years = population.column(4).as_primitive::<Int32Type>();
    let usccs = enterprises.column(0).as_string::<i32>();
    let industries = enterprises.column(2).as_string::<i32>();
    let staff = enterprises.column(4).as_primitive::<Int32Type>();
    // Employers drawn in proportion to their staff: cumulative head counts.
    let mut cumulative = Vec::with_capacity(usccs.len());
    let mut total = 0u64;
    for row in 0..usccs.len() {
        total += u64::from(staff.value(row).max(1).unsigned_abs());
        cumulative.push(total);
    }
    let mut rows = ContributionRows::default();
    for row in 0..people.len() {
        let year = birth_years.value(row);
        if !(1965..=2004).contains(&year) || random.below(4) == 0 || total == 0 {
            continue;
        }
        let pick = random.below(total);
        let employer = cumulative.partition_point(|&count| count <= pick);
        let pay_level = match INDUSTRIES.iter().position(|(name, _, _)| *name == industries.value(employer)) {
            Some(6) | Some(7) => 1.6,
            Some(2) | Some(5) => 0.8,
            _ => 1.0,
        };
        let base = 7_000.0 * pay_level * (0.35 * random.normal()).exp();
        let mobile = format!("{}{:08}", random.pick(MOBILE_PREFIXES), random.below(100_000_000));
        let first18 = format!("{}{:012}", random.pick(CARD_BINS), random.below(1_000_000_000_000));
        let card = format!("{first18}{}", luhn_check_digit(&first18).map(char::from).unwrap_or('0'));
        for month in 0..months {
            let raised = base * (1.0 + 0.04 * f64::from(month / 12));
            let month_base = raised.clamp(CONTRIBUTION_BASE.0, CONTRIBUTION_BASE.1).round();
            rows.person_ids.push(people.value(row).to_string());
            rows.mobiles.push(mobile.clone());
            rows.bank_cards.push(card.clone());
            rows.employers.push(usccs.value(employer).to_string());
            rows.months.push(format!("{}-{:02}", 2025 + month / 12, month % 12 + 1));
            rows.bases.push(month_base);
            rows.pensions.push((month_base * PENSION_RATE * 100.0).round() / 100.0);
        }
    }
    let schema = Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("mobile", DataType::Utf8, false),
        Field::new("bank_card", DataType::Utf8, false),
        Field::new("employer_uscc", DataType::Utf8, false),
        Field::new("month", DataType::Utf8, false),
        Field::new("contribution_base", DataType::Float64, false),
        Field::new("pension_paid", DataType::Float64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(rows.person_ids)),
            Arc::new(StringArray::from(rows.mobiles)),
            Arc::new(StringArray::from(rows.bank_cards)),
            Arc::new(StringArray::from(rows.employers)),
            Arc::new(StringArray::from(rows.months)),
            Arc::new(Float64Array::from(rows.bases)),
            Arc::new(Float64Array::from(rows.pensions)),
        ],
    )
    .expect("columns match the schema")
}

/// Writes `batch` as one Parquet file.
pub fn write_parquet(batch: &RecordBatch, path: &Path) -> Result<(), DataError> {
    let file =
        std::fs::File::create(path).map_err(|source| DataError::Io { path: path.display().to_string(), source })?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), None).map_err(|error| DataError::Parquet(error.to_string()))?;
    writer.write(batch).map_err(|error| DataError::Parquet(error.to_string()))?;
    writer.close().map_err(|error| DataError::Parquet(error.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use unseen_policy::identifiers::{is_valid_resident_id, is_valid_uscc};

    use super::*;

    #[test]
    fn same_seed_same_data_and_identifiers_are_valid_and_unique() {
        let people = population(2_000, 5);
        assert_eq!(people, population(2_000, 5));
        assert_ne!(people, population(2_000, 6));
        let cards = people.column(1).as_string::<i32>();
        assert!((0..cards.len()).all(|row| is_valid_resident_id(cards.value(row))));
        let ids: HashSet<&str> = people.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids.len(), 2_000);

        let firms = enterprises(2_000, 5);
        let usccs = firms.column(0).as_string::<i32>();
        assert!((0..usccs.len()).all(|row| is_valid_uscc(usccs.value(row))));
        assert_eq!(usccs.iter().flatten().collect::<HashSet<_>>().len(), 2_000);
        assert_eq!(electricity(&firms, 12, 5).num_rows(), 24_000);
    }

    #[test]
    fn social_insurance_ties_working_age_people_to_real_employers_with_valid_contacts() {
        use unseen_policy::identifiers::{is_bank_card, is_mobile, luhn_valid};
        let people = population(3_000, 9);
        let firms = enterprises(500, 9);
        let insurance = social_insurance(&people, &firms, 12, 9);
        assert_eq!(insurance, social_insurance(&people, &firms, 12, 9), "deterministic");
        assert_eq!(insurance.num_rows() % 12, 0, "twelve months per insured person");
        let insured = insurance.num_rows() / 12;
        let working_age = people
            .column(4)
            .as_primitive::<Int32Type>()
            .iter()
            .flatten()
            .filter(|year| (1965..=2004).contains(year))
            .count();
        assert!(insured * 10 > working_age * 6 && insured * 10 < working_age * 9, "{insured} of {working_age} insured");
        let known_people: HashSet<&str> = people.column(0).as_string::<i32>().iter().flatten().collect();
        let known_firms: HashSet<&str> = firms.column(0).as_string::<i32>().iter().flatten().collect();
        let (ids, mobiles, cards, employers) = (
            insurance.column(0).as_string::<i32>(),
            insurance.column(1).as_string::<i32>(),
            insurance.column(2).as_string::<i32>(),
            insurance.column(3).as_string::<i32>(),
        );
        let bases = insurance.column(5).as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        for row in 0..insurance.num_rows() {
            assert!(known_people.contains(ids.value(row)) && known_firms.contains(employers.value(row)));
            assert!(is_mobile(mobiles.value(row)), "{}", mobiles.value(row));
            assert!(is_bank_card(cards.value(row)) && luhn_valid(cards.value(row)), "{}", cards.value(row));
            assert!((CONTRIBUTION_BASE.0..=CONTRIBUTION_BASE.1).contains(&bases.value(row)));
        }
        // Larger employers insure more people: the largest tenth of firms by staff insure
        // more than a tenth of the people.
        let mut by_staff: Vec<(i32, &str)> = (0..firms.num_rows())
            .map(|row| {
                (firms.column(4).as_primitive::<Int32Type>().value(row), firms.column(0).as_string::<i32>().value(row))
            })
            .collect();
        by_staff.sort_unstable_by(|a, b| b.cmp(a));
        let largest: HashSet<&str> = by_staff.iter().take(firms.num_rows() / 10).map(|(_, uscc)| *uscc).collect();
        let at_largest = (0..insurance.num_rows()).filter(|&row| largest.contains(employers.value(row))).count();
        assert!(at_largest * 10 > insurance.num_rows() * 3, "{at_largest} of {} rows", insurance.num_rows());
    }

    #[test]
    fn industry_by_district_has_small_and_large_groups() {
        let firms = enterprises(2_000, 2026);
        let industries = firms.column(2).as_string::<i32>();
        let districts = firms.column(3).as_string::<i32>();
        let mut groups: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        for row in 0..firms.num_rows() {
            *groups.entry((industries.value(row), districts.value(row))).or_default() += 1;
        }
        assert!(groups.values().any(|&count| count < 10), "some groups fall below k = 10");
        assert!(groups.values().filter(|&&count| count >= 10).count() >= 20, "most groups can be released");
    }

    #[test]
    fn parquet_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let people = population(100, 1);
        write_parquet(&people, &path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 100);
    }
}
