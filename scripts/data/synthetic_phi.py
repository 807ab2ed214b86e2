#!/usr/bin/env python3
"""SYNTHETIC clinical notes with PHI spans, for token classification (model-based de-identification).

Everything here is made up. The notes are generated from hand-written sentence templates and
hand-written lists of first names, surnames, streets, towns and hospital-name parts combined at
random; no real patient, clinician, record or facility is described, and any resemblance is chance.
Phone numbers, record numbers, e-mail addresses (reserved example.* domains) and zip codes are
random digits. Use it to build and test the NER pipeline, not to claim de-identification quality
on real notes (for that, i2b2 / n2c2 2014 under its data-use agreement).

Usage:
  python3 scripts/data/synthetic_phi.py --out DIR [--seed 13] [--train 2000 --val 300 --test 300]
                                        [--format jsonl|conll|both]
  python3 scripts/data/synthetic_phi.py --check      # self-test on a small generated set, no output kept

Output (default --format jsonl; the same notes for every format with the same seed and sizes):
  DIR/{train,val,test}.jsonl   one note a line:
      {"id": "train-00000", "text": "...", "entities": [{"start": s, "end": e, "label": "NAME"}, ...]}
      start/end are CHARACTER offsets into text (Python str indices, end exclusive: the doccano /
      Label Studio convention), sorted, non-overlapping; the span text never starts or ends with
      whitespace and always starts and ends on a token boundary of the CoNLL tokenisation below.
  DIR/{train,val,test}.conll   one token a line, "token<TAB>tag", IOB2 tags (B-NAME, I-NAME, O);
      a blank line after each sentence (notes follow each other, no document markers). Tokens are
      the regex \\w+|[^\\w\\s] over the note: runs of letters/digits/underscore (Unicode-aware, so
      "Nguyễn" is one token) and each other non-space character alone ("O'Brien" -> O ' Brien,
      "03/14/2024" -> 03 / 14 / 2024). Sentences are the generator's sentences and header lines.

Labels (what the span covers):
  NAME      patients, relatives, clinicians. Titles are outside the span: "Dr. [Okafor]",
            "Mr. [Lindqvist]", "[Amara Okafor], MD". Forms: "First Last", "Last, First",
            "First M. Last", "F. Last", first name alone, "LAST, FIRST" in headers.
  DATE      03/14/2024, 3/14/24, 2024-03-14, March 14, 2024, Mar 14, 2024, 14 Mar 2024,
            14-Mar-2024, 3/14, March 14, 14th of March. A year alone ("since 2015") is NOT PHI.
  PHONE     (617) 555-0142, 617-555-0142, 617.555.0142, +1 617 555 0142, 555-0142.
  MRN       medical record numbers, labelled ("MRN: [00453321]", "MR# [A7781203]") and bare
            (in a header line, "[00453321]", or in parentheses after the name).
  ADDRESS   street addresses ("[42 Willow Lane, Apt 3B]"), "[street, town, ST 01234]", town alone,
            town and state. The whole contiguous address is one span.
  AGE       the number of an age: "[67]-year-old", "[92] y/o", "age [101]", "aged [45]",
            "[8]-month-old"; 90+ ages are frequent on purpose.
  HOSPITAL  facility names: "[Saint Brigid Medical Center]", "[Harrow Valley General Hospital]".
  EMAIL     made-up addresses at example.org / example.com / example.net.

Look-alikes that are NOT PHI appear on purpose: doses ("lisinopril 20 mg"), lab values ("K 4.1",
"Cr 1.12"), blood pressures ("BP 132/84", shaped like a date), strength grades ("4/5"), scores
("Mini-Cog 3/5"), years alone, durations, codes ("ICD-10 E11.9"), eponymous diseases and devices
("Parkinson disease", "Foley catheter", "Graves disease", "Glasgow Coma Scale"), colour words
that are also surnames ("brown", "green", "white"), and roles without names ("the attending").
About 1 note in 10 has no PHI at all, and discharge summaries are long (about 300-600 words) so
that models must window.

Held-out design (generalisation, not memorisation): a fixed 20% of surnames, 20% of first names,
20% of street, town and hospital-name stems, and 15% of the sentence templates of each section are
held out: train and val never use them. Test draws held-out items with probability 0.5 (names,
places) and 0.35 (templates), the rest from the shared pools. The split of pools does not depend
on --seed. The script prints, per split, how many entity strings never occur in train. With the
defaults (seed 13, 2000/300/300): 26% of test sentences come from held-out templates, 52% of test
NAME spans contain a held-out name, and 71% of test NAME strings never occur in train (val: 42%,
from new first/last combinations only). Val is therefore an in-distribution split, test a shifted one.

Check: `--check` generates 200 notes in a temporary folder (both formats) and asserts the span and
CoNLL invariants (scripts/data/check_ner_data.py, which also checks any written folder: `python3
scripts/data/check_ner_data.py DIR`), determinism, that train/val never use held-out names or
templates, and that the checker rejects broken spans. Standard library only.
"""
import argparse, json, os, random, re, sys, tempfile, unicodedata

from check_ner_data import check_dir

LABELS = ("NAME", "DATE", "PHONE", "MRN", "ADDRESS", "AGE", "HOSPITAL", "EMAIL")
TOKEN = re.compile(r"\w+|[^\w\s]")

# ---------------------------------------------------------------- hand-written name lists (made up)
FEMALE = """Maria Aisha Zoë Mei Priya Fatima Olga Ingrid Chiamaka Lucía Hannah Emily Grace Sofia Amara
Yuki Leila Siobhan Ana Thanh Ngozi Svetlana Chloé Beatriz Kateřina Noor Elif Marisol Ayesha Freya
Dagny Wanjiru Isabel Rosa Margaret Dorothy Linda Keisha Tamar Anjali Mónica Hyun-woo Agnieszka
Renée Aoife Hoa Seo-yeon Nadia Esperanza Jolene""".split()
MALE = """James Mohammed Wei Rahul Kwame Dmitri Lars José Ahmed Kenji Tomás Oluwaseun Liam Noah
Diego Hamid Giovanni Pierre Sven Tariq Raj Minh Jamal Juan Mateo Bjørn Ibrahim Chukwuemeka Hiroshi
Kofi Andrés Pavel Samuel Robert William George Darnell Erik Yusuf Arjun Nikolai Ethan Hugo
François Jörg Sione Tevita Dong-hyun Malik Henry""".split()
SURNAMES = """Nguyễn Müller O'Brien Okafor Patel Kim García Rodríguez Smith Johnson Brown Green White
Young King Hill Novak Kowalski Andersson Lindqvist Haddad Khan Ali Yamamoto Tanaka Chen Wang Li Zhang
Singh Sharma Mensah Adeyemi Mwangi Kariuki Ivanov Petrova Rossi Bianchi Dubois Lefèvre Fernández
Silva Santos Oliveira Cohen Levi Friedman Schneider Fischer Weber Jørgensen Nielsen Sørensen
Murphy Kelly O'Connor MacDonald Campbell Davies Evans Hughes Pham Tran Le Hoang Park Choi Jung
Nakamura Suzuki Kaur Reddy Iyer Abubakar Diallo Traoré Ndiaye Boateng Asante Hernández López
Martínez Gómez Díaz Torres Ramírez Cruz Morales Ortiz Gutiérrez Castillo Vargas Romero Nowak
Wiśniewski Dvořák Horváth Nagy Popescu Yılmaz Demir Kaya Öztürk Papadopoulos Georgiou Kuznetsov
Sokolov Bergström Virtanen Korhonen Hansen Olsen Al-Sayed Nasser Farouk Mahmoud Rahman Hossain
Chowdhury Gupta Das Banerjee Fonseca Costa Pereira Alves Ferreira Walker Robinson Thompson Clarke
Wright Baker Carter Mitchell Harper Whitfield Ashworth Blackwood Fairbanks Quiñones Sato Watanabe
Takahashi Ito Huang Zhao Wu Liu Hakimi Tehrani Karimi Ahmadi Okonkwo Eze Nwosu Obi Achebe""".split()
INITIALS = "ABCDEFGHJKLMNPRSTW"

# ---------------------------------------------------------------- places and facilities (made up)
STREETS = """Willow Maple Cedar Harbor Juniper Orchard Bramble Foxglove Larkspur Hawthorn Millbrook
Quarry Kestrel Sycamore Tamarack Wren Chestnut Alder Birchwood Linden Magnolia Pinecrest Redfern
Saddle Thistle Heron Copper Granite Lantern Meadowlark Old Mill Ridgeview Stonegate Sparrow
Beacon Clover Driftwood Elmhurst Fern Gable Hollow Ivy Jasper Kingfisher Laurel Moss""".split()
STREET_TYPES = ["Street", "St.", "Avenue", "Ave", "Lane", "Road", "Rd.", "Drive", "Court", "Way",
                "Boulevard", "Place", "Terrace", "Circle"]
TOWN_HEADS = """Ash Bright Clear Dun Elm Fair Glen Green Hazel High Kings Lake Lin Mill North Oak Pine
Red River Rock Rose Silver Spring Stone Sun West Wil Wolf Brook Cold East Hart""".split()
TOWN_TAILS = ["ford", "field", "brook", "dale", "ton", "wood", "haven", "ridge", "port", "ville", "bury",
              "mont", " Falls", " Springs", " Heights", " Harbor", "stead", "wick"]
STATES = "AL AZ CA CO CT FL GA IA IL IN KS KY MA MD ME MI MN MO NC NH NJ NM NV NY OH OK OR PA RI SC TN TX UT VA VT WA WI".split()
HOSPITAL_STEMS = """Saint Brigid|Mercy Ridge|Harrow Valley|Lakeshore|Riverside|Good Shepherd|Pinecrest|
Northgate|Saint Anselm|Bayview|Holy Cross|Cedar Hills|Westbrook|Summit|Evergreen|Fairhaven|
Saint Columba|Greystone|Brightwater|Oakmont|Sacred Heart|Silver Lake|Ashford|Kingsbridge|Meadowbrook|
Saint Lucian|Stonebridge|Larkfield|Copper Canyon|Highland Park""".replace("\n", "").split("|")
HOSPITAL_TYPES = ["Medical Center", "General Hospital", "Regional Medical Center", "Community Hospital",
                  "Memorial Hospital", "Children's Hospital", "University Hospital", "Rehabilitation Center",
                  "Health Center", "Cancer Institute", "Behavioral Health Hospital", "Family Clinic"]
EMAIL_DOMAINS = ["example.org", "example.com", "example.net", "mail.example.org", "clinic.example.com"]

# ---------------------------------------------------------------- non-PHI fillers
DRUGS = [("lisinopril", [5, 10, 20, 40]), ("metformin", [500, 850, 1000]), ("atorvastatin", [10, 20, 40, 80]),
         ("amlodipine", [2.5, 5, 10]), ("metoprolol succinate", [25, 50, 100]), ("furosemide", [20, 40, 80]),
         ("apixaban", [2.5, 5]), ("levothyroxine", [25, 50, 75, 88, 100]), ("sertraline", [25, 50, 100]),
         ("gabapentin", [100, 300, 600]), ("prednisone", [5, 10, 20, 40]), ("omeprazole", [20, 40]),
         ("insulin glargine", [10, 14, 22, 30]), ("carbidopa-levodopa", [25, 50]), ("warfarin", [2, 3, 5]),
         ("ceftriaxone", [1000, 2000]), ("vancomycin", [750, 1000, 1250]), ("acetaminophen", [500, 650, 1000]),
         ("tamsulosin", [0.4]), ("aspirin", [81, 325]), ("spironolactone", [12.5, 25]), ("hydralazine", [10, 25])]
FREQS = ["daily", "twice daily", "BID", "TID", "q8h", "q6h as needed", "nightly", "every morning", "weekly"]
DISEASES = ["type 2 diabetes mellitus", "hypertension", "Parkinson disease", "chronic kidney disease stage 3",
            "COPD", "atrial fibrillation", "Graves disease", "Crohn disease", "heart failure with reduced ejection fraction",
            "Hashimoto thyroiditis", "Alzheimer dementia", "Hodgkin lymphoma", "obstructive sleep apnea",
            "hyperlipidemia", "major depressive disorder", "Addison disease", "Bell palsy", "Cushing syndrome",
            "Down syndrome", "rheumatoid arthritis", "gout", "osteoarthritis of the knee", "asthma",
            "Barrett esophagus", "Guillain-Barré syndrome", "Wilson disease", "Raynaud phenomenon"]
SYMPTOMS = ["shortness of breath", "chest pain", "fever and chills", "productive cough with green sputum",
            "lower extremity edema", "dizziness", "abdominal pain", "nausea and vomiting", "headache",
            "palpitations", "fatigue", "dysuria", "brown urine", "confusion", "weakness of the left arm",
            "a white patch on the tongue", "back pain", "syncope"]
PROCEDURES = ["Foley catheter placement", "a Whipple procedure", "cardiac catheterization", "colonoscopy",
              "a lumbar puncture", "a transthoracic echocardiogram", "an MRI of the brain", "a CT angiogram",
              "thoracentesis", "a Nissen fundoplication", "a Holter monitor", "bronchoscopy"]
ROLES = ["the attending", "the on-call resident", "the nurse practitioner", "the covering physician",
         "the pharmacist", "social work", "physical therapy", "the charge nurse", "the hospitalist",
         "the consulting team", "case management"]
RELATIONS = {True: ["daughter", "wife", "mother", "sister", "niece", "granddaughter", "partner", "friend", "neighbor"],
             False: ["son", "husband", "father", "brother", "nephew", "grandson", "partner", "friend", "neighbor"]}
SPECIALTIES = ["cardiology", "neurology", "nephrology", "endocrinology", "pulmonology", "gastroenterology",
               "oncology", "rheumatology", "infectious disease", "orthopedics", "urology", "psychiatry"]

# ---------------------------------------------------------------- sentence templates
# Entity slots: {PT} patient name (any form), {PT_LAST} surname (the template supplies the title),
# {PT_FIRST} first name, {DR} clinician name, {REL} relative name, {DATE}, {PHONE}, {MRN}, {ADDR}
# street address, {FULLADDR} street+town+state+zip, {TOWN} town or "town, ST", {AGE}, {AGE90}
# (90-105), {AGEMO} (months), {HOSP}, {EMAIL}. Other slots are non-PHI fillers (see fill()).
SECTIONS = {
    "header": [
        "Patient: {PT}    MRN: {MRN}    DOB: {DATE}",
        "Name: {PT_UPPER}   Medical record #: {MRN}",
        "{PT_UPPER}  {MRN}  {DATE}",
        "Admission Date: {DATE}    Discharge Date: {DATE}",
        "Date of service: {DATE}",
        "Attending: {DR}, MD    Service: {SPECIALTY}",
        "Facility: {HOSP}",
        "MR# {MRN}  Visit date: {DATE}",
        "Patient name: {PT}  Age: {AGE}  Sex: {SEX}",
        "Referring provider: Dr. {DR}, {HOSP}",
        "Encounter #{ENC} - {HOSP} - {DATE}",
        "Primary care: {DR}, NP  Phone: {PHONE}",
    ],
    "hpi": [
        "{PT} is a {AGE}-year-old {man} with a history of {DISEASE} who presents with {N} days of {SYMPTOM}.",
        "{Mr} {PT_LAST} is a {AGE} y/o {man} with {DISEASE} and {DISEASE2}, referred by Dr. {DR} for {SYMPTOM}.",
        "This {AGE90}-year-old {man} was brought in by {his} {RELATION}, {REL}, after a fall at home on {DATE}.",
        "{He} was seen at {HOSP} on {DATE} for similar symptoms and was discharged on {DRUG}.",
        "The patient reports {SYMPTOM} that began on {DATE} and has worsened since.",
        "{PT_FIRST} states that the {SYMPTOM} started after {his} trip to {TOWN} last month.",
        "History is obtained from the patient and {his} {RELATION} {REL}, who can be reached at {PHONE}.",
        "{He} was transferred from {HOSP} for evaluation by {SPECIALTY}.",
        "{He} has had {DISEASE} since {YEAR} and is followed by Dr. {DR} at {HOSP}.",
        "Per the EMS report, {he} was found at {his} home at {ADDR} by a neighbor.",
        "The patient is a {AGE}-year-old {man} who lives alone in {TOWN} and denies {SYMPTOM}.",
        "{PT} ({MRN}) was last admitted on {DATE} with a COPD exacerbation.",
        "{He} reports {SYMPTOM} for {N} weeks without {SYMPTOM2}.",
        "A {AGEMO}-month-old infant brought in by {his} mother {REL} for {SYMPTOM}.",
        "{Mr} {PT_LAST}, age {AGE90}, presents from {HOSP} with {SYMPTOM}.",
        "{He} was in {his} usual state of health until {DATE}, when {he} developed {SYMPTOM}.",
        "The patient was diagnosed with {DISEASE} in {YEAR} and had {PROCEDURE} on {DATE}.",
        "{PT_FIRST} is a {AGE} yo {man} who works as a teacher and presents with {SYMPTOM}.",
        "Patient is a pleasant {AGE}-year-old {man} seen in clinic today for follow-up of {DISEASE}.",
    ],
    "history": [
        "Past medical history: {DISEASE}, {DISEASE2}, status post {PROCEDURE} in {YEAR}.",
        "Family history: {his} father had {DISEASE} diagnosed at age {AGE}; {his} mother died at {AGE90}.",
        "Social history: lives with {his} {RELATION} {REL} at {FULLADDR}; former smoker, quit in {YEAR}.",
        "{He} drinks {N} glasses of wine per week and denies illicit drug use.",
        "Allergies: penicillin (rash), sulfa drugs.",
        "Surgical history notable for {PROCEDURE} at {HOSP} in {YEAR}.",
        "{His} {RELATION}, {REL}, is the health care proxy (phone {PHONE}).",
        "{He} previously received care at {HOSP} under Dr. {DR}.",
        "Immunizations are up to date per the state registry.",
        "{He} is retired and lives in {TOWN} with {his} {RELATION}.",
    ],
    "meds": [
        "Medications: {DRUG}, {DRUG2}, and {DRUG3}.",
        "Home medications include {DRUG} and {DRUG2}.",
        "{DRUG} was started on {DATE} by Dr. {DR}.",
        "Continue {DRUG}; hold {DRUG2} until renal function improves.",
        "The patient was switched from {DRUG} to {DRUG2} on {DATE} because of side effects.",
        "Refill of {DRUG} sent to the pharmacy; pharmacy phone {PHONE}.",
        "Patient takes {DRUG} and reports good adherence.",
        "Dose of {DRUG} was increased at the last visit.",
    ],
    "exam": [
        "Vitals: T {TEMP}, HR {HR}, BP {SBP}/{DBP}, RR {RR}, SpO2 {SAT}% on room air.",
        "BP {SBP}/{DBP}, pulse {HR}, weight {WT} kg.",
        "On exam {he} is alert and oriented x3; strength {MS}/5 in the left upper extremity.",
        "Glasgow Coma Scale {GCS}; pupils equal and reactive.",
        "Lungs with crackles at the bases; no wheezing.",
        "Heart regular rate and rhythm, {GRADE}/6 systolic murmur at the left sternal border.",
        "Abdomen soft, nontender; bowel sounds present.",
        "Mini-Cog {MS}/5; Montreal Cognitive Assessment {MOCA}/30.",
        "Skin: a brown macule of {N} mm on the left shoulder; no rash.",
        "Neuro: resting tremor of the right hand consistent with Parkinson disease.",
        "Extremities: {EDEMA}+ pitting edema to the knees bilaterally.",
    ],
    "labs": [
        "Labs: Na {NA}, K {K}, Cl {CL}, HCO3 {BICARB}, BUN {BUN}, Cr {CR}, glucose {GLU}.",
        "WBC {WBC}, Hgb {HGB}, platelets {PLT}.",
        "Hemoglobin A1c was {A1C}% on {DATE}.",
        "INR {INR} on warfarin; TSH {TSH}.",
        "Troponin {TROP} and BNP {BNP}; EKG with sinus rhythm, QTc {QTC} ms.",
        "Lactate {LACT}; blood cultures drawn on {DATE} are pending.",
        "Echo on {DATE} showed an ejection fraction of {EF}%.",
        "Urinalysis with {N} WBC per high-power field; culture pending.",
        "Chest x-ray read by Dr. {DR} showed a right lower lobe infiltrate.",
        "CT head without acute intracranial abnormality.",
        "Lipid panel: LDL {LDL}, HDL {HDL}, triglycerides {TG}.",
    ],
    "assessment": [
        "Assessment: {AGE}-year-old {man} with {DISEASE} presenting with {SYMPTOM}, likely {DISEASE2}.",
        "Impression: {DISEASE}, poorly controlled; A1c {A1C}%.",
        "{Mr} {PT_LAST} is clinically improving on {DRUG}.",
        "Differential includes {DISEASE} and {DISEASE2}; less likely infection.",
        "Discussed with Dr. {DR} of {SPECIALTY}, who agrees with the plan.",
        "{PT_FIRST}'s symptoms are most consistent with {DISEASE}.",
        "Course complicated by {SYMPTOM} on hospital day {N}.",
        "The patient's {DISEASE} is stable on the current regimen.",
        "Case reviewed with {ROLE}; no changes to the plan.",
        "Diagnosis code ICD-10 {ICD}.",
    ],
    "plan": [
        "Start {DRUG} {FREQ}, recheck BMP in {N} days.",
        "Follow up with Dr. {DR} in {N} weeks at {HOSP}.",
        "Return to clinic on {DATE} for repeat labs.",
        "Call the clinic at {PHONE} with any questions or worsening symptoms.",
        "Referral placed to {SPECIALTY} at {HOSP}; appointment on {DATE}.",
        "Schedule {PROCEDURE} for {DATE}.",
        "Patient will be contacted by {ROLE} regarding home services.",
        "Discharge to {HOSP} for subacute rehabilitation.",
        "Records faxed to {DR}, MD at {PHONE}.",
        "Continue current medications; {DRUG} {FREQ}.",
        "Obtain records from {HOSP} (fax {PHONE}).",
        "Please send results to {EMAIL}.",
        "Home health to visit the patient at {FULLADDR}.",
        "Reviewed warning signs; {he} verbalized understanding.",
        "Physical therapy evaluation; fall precautions.",
    ],
    "discharge": [
        "{PT} was discharged home on {DATE} in stable condition.",
        "{He} was discharged to {his} {RELATION}'s home at {FULLADDR}.",
        "Discharge diagnosis: {DISEASE}.",
        "Follow-up appointment with Dr. {DR} on {DATE} at {TIME}.",
        "Condition at discharge: stable; ambulating with a walker.",
        "Discharge medications: {DRUG} {FREQ} and {DRUG2} {FREQ}.",
        "The patient's {RELATION} {REL} will provide transportation.",
        "Total time spent on discharge: {N0} minutes.",
        "Dictated by {DR}, MD on {DATE}; electronically signed by {DR}, MD.",
        "cc: Dr. {DR}, {HOSP}, {FULLADDR}",
    ],
    "phone": [
        "Telephone encounter on {DATE}: {PT} called regarding {SYMPTOM}.",
        "Spoke with the patient's {RELATION} {REL} at {PHONE}.",
        "Left a voicemail at {PHONE} asking the patient to call back.",
        "Patient confirmed identity with name and date of birth ({DATE}).",
        "The patient asked that test results be e-mailed to {EMAIL}.",
        "Advised {him} to go to the emergency department at {HOSP} if symptoms worsen.",
        "Message routed to Dr. {DR}.",
        "Pharmacy called back to confirm the dose of {DRUG}.",
    ],
    "letter": [
        "Thank you for referring {PT}, a {AGE}-year-old {man}, whom I saw on {DATE}.",
        "I saw your patient {Mr} {PT_LAST} in the {SPECIALTY} clinic today.",
        "Please do not hesitate to contact me at {PHONE} or {EMAIL}.",
        "I will see {him} again in {N} months.",
        "I appreciate the opportunity to participate in {his} care.",
    ],
}
HEADINGS = {"hpi": "HISTORY OF PRESENT ILLNESS:", "history": "PAST HISTORY:", "meds": "MEDICATIONS:",
            "exam": "PHYSICAL EXAM:", "labs": "LABS AND STUDIES:", "assessment": "ASSESSMENT:", "plan": "PLAN:",
            "discharge": "DISCHARGE INSTRUCTIONS:", "phone": "TELEPHONE NOTE:", "letter": "CONSULT LETTER:"}
ENTITY_SLOTS = {"PT": "NAME", "PT_UPPER": "NAME", "PT_LAST": "NAME", "PT_FIRST": "NAME", "DR": "NAME",
                "REL": "NAME", "DATE": "DATE", "PHONE": "PHONE", "MRN": "MRN", "ADDR": "ADDRESS",
                "FULLADDR": "ADDRESS", "TOWN": "ADDRESS", "AGE": "AGE", "AGE90": "AGE", "AGEMO": "AGE",
                "HOSP": "HOSPITAL", "EMAIL": "EMAIL"}
SLOT = re.compile(r"\{(\w+)\}")
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def held_out(items, fraction, salt):
    """A fixed subset of items (independent of --seed): (shared, held)."""
    k = max(1, round(len(items) * fraction))
    held = set(random.Random("bedside-holdout-" + salt).sample(range(len(items)), k))
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


POOLS = {"female": held_out(FEMALE, 0.2, "female"), "male": held_out(MALE, 0.2, "male"),
         "surname": held_out(SURNAMES, 0.2, "surname"), "street": held_out(STREETS, 0.2, "street"),
         "town": held_out(TOWN_HEADS, 0.2, "town"), "hospital": held_out(HOSPITAL_STEMS, 0.2, "hospital")}
TEMPLATES = {name: held_out(ts, 0.15, "tpl-" + name) for name, ts in SECTIONS.items()}


def has_phi(template):
    return any(s in ENTITY_SLOTS for s in SLOT.findall(template))


class Note:
    """Builds one note: literal text and entity values appended in order, spans recorded."""

    def __init__(self, rng, split):
        self.rng, self.split = rng, split
        self.parts, self.length, self.entities, self.sentences, self.used = [], 0, [], [], []
        self.female = rng.random() < 0.5
        self.first = self.pick("female" if self.female else "male")
        self.last = self.pick("surname")
        self.doctors = [self.person() for _ in range(rng.randint(1, 3))]
        self.relative_female = rng.random() < 0.5
        first = self.pick("female" if self.relative_female else "male")
        self.relative = first, self.last if rng.random() < 0.6 else self.pick("surname")
        self.mrn = self.new_mrn()
        self.hospitals = [self.hospital() for _ in range(rng.randint(1, 2))]

    # -- pools
    def pick(self, pool, p_held=0.5):
        shared, held = POOLS[pool]
        if self.split == "test" and self.rng.random() < p_held:
            return self.rng.choice(held)
        return self.rng.choice(shared)

    def person(self, same_last=False):
        first = self.pick("female" if self.rng.random() < 0.5 else "male")
        return first, self.last if same_last else self.pick("surname")

    def hospital(self):
        return f"{self.pick('hospital')} {self.rng.choice(HOSPITAL_TYPES)}"

    def town(self):
        head = self.pick("town")
        tail = self.rng.choice(TOWN_TAILS)
        return head + (tail if tail.startswith(" ") else tail.lower())

    def street(self):
        r = self.rng
        s = f"{r.randint(1, 9999)} {self.pick('street')} {r.choice(STREET_TYPES)}"
        if r.random() < 0.25:
            s += f", {r.choice(['Apt', 'Unit', 'Apt.', '#'])} {r.randint(1, 40)}{r.choice(['', 'A', 'B', 'C'])}"
        return s

    # -- entity values
    def value(self, slot):
        r = self.rng
        if slot == "PT":
            f, l = self.first, self.last
            return r.choice([f"{f} {l}", f"{f} {l}", f"{l}, {f}", f"{f} {r.choice(INITIALS)}. {l}", f"{f[0]}. {l}"])
        if slot == "PT_UPPER":
            return r.choice([f"{self.last.upper()}, {self.first.upper()}", f"{self.last}, {self.first}",
                             f"{self.first} {self.last}"])
        if slot == "PT_LAST":
            return self.last
        if slot == "PT_FIRST":
            return self.first
        if slot == "DR":
            f, l = r.choice(self.doctors)
            return r.choice([l, l, f"{f} {l}", f"{f[0]}. {l}"])
        if slot == "REL":
            f, l = self.relative
            return r.choice([f, f"{f} {l}"])
        if slot == "DATE":
            return self.date()
        if slot == "PHONE":
            a, b, c = r.randint(201, 989), r.choice([555, r.randint(200, 999)]), r.randint(0, 9999)
            return r.choice([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
                             f"{b}-{c:04d}"])
        if slot == "MRN":
            return self.mrn if r.random() < 0.85 else self.new_mrn()
        if slot == "ADDR":
            return self.street()
        if slot == "FULLADDR":
            return f"{self.street()}, {self.town()}, {r.choice(STATES)} {r.randint(1000, 99999):05d}"
        if slot == "TOWN":
            return self.town() if r.random() < 0.6 else f"{self.town()}, {r.choice(STATES)}"
        if slot == "AGE":
            return str(r.choice([r.randint(18, 89), r.randint(18, 89), r.randint(90, 104), r.randint(1, 17)]))
        if slot == "AGE90":
            return str(r.randint(90, 105))
        if slot == "AGEMO":
            return str(r.randint(1, 23))
        if slot == "HOSP":
            return r.choice(self.hospitals) if r.random() < 0.7 else self.hospital()
        if slot == "EMAIL":
            f, l = ascii_name(self.first), ascii_name(self.last)
            user = r.choice([f"{f}.{l}", f"{f[0]}{l}", f"{f}{l}{r.randint(1, 99)}", f"{l}.{f[0]}"])
            return f"{user}@{r.choice(EMAIL_DOMAINS)}"
        raise KeyError(slot)

    def new_mrn(self):
        r = self.rng
        return r.choice([f"{r.randint(0, 99999999):08d}", f"{r.randint(1000000, 9999999)}",
                         f"{r.choice('ABCEHKMRT')}{r.randint(1000000, 9999999)}",
                         f"{r.randint(0, 99):02d}-{r.randint(0, 999):03d}-{r.randint(0, 999):03d}"])

    def date(self):
        r = self.rng
        y, m, d = r.randint(2015, 2025), r.randint(1, 12), r.randint(1, 28)
        mon = MONTHS[m - 1]
        nth = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd"}.get(d, "th")
        return r.choice([f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{y}-{m:02d}-{d:02d}",
                         f"{mon} {d}, {y}", f"{mon[:3]} {d}, {y}", f"{d} {mon[:3]} {y}", f"{d}-{mon[:3]}-{y}",
                         f"{m}/{d}", f"{mon} {d}", f"{d}{nth} of {mon}"])

    # -- non-PHI fillers
    def fill(self, slot):
        r = self.rng
        pronouns = {"he": ("she", "he"), "He": ("She", "He"), "his": ("her", "his"), "His": ("Her", "His"),
                    "him": ("her", "him"), "man": ("woman", "man"), "Mr": (r.choice(["Ms.", "Mrs."]), "Mr."),
                    "SEX": ("F", "M")}
        if slot in pronouns:
            return pronouns[slot][0 if self.female else 1]
        if slot.startswith("DRUG"):
            name, doses = r.choice(DRUGS)
            dose = r.choice(doses)
            return f"{name} {dose:g} {'mcg' if name == 'levothyroxine' else 'units' if 'insulin' in name else 'mg'}"
        if slot.startswith("DISEASE"):
            return r.choice(DISEASES)
        if slot.startswith("SYMPTOM"):
            return r.choice(SYMPTOMS)
        simple = {
            "PROCEDURE": lambda: r.choice(PROCEDURES), "ROLE": lambda: r.choice(ROLES),
            "RELATION": lambda: r.choice(RELATIONS[self.relative_female]), "SPECIALTY": lambda: r.choice(SPECIALTIES),
            "FREQ": lambda: r.choice(FREQS), "N": lambda: str(r.randint(2, 14)), "N0": lambda: str(r.choice([20, 30, 35, 45])),
            "YEAR": lambda: str(r.randint(1985, 2024)), "ENC": lambda: str(r.randint(100000, 999999)),
            "TEMP": lambda: f"{r.uniform(36.1, 39.4):.1f}", "HR": lambda: str(r.randint(52, 128)),
            "SBP": lambda: str(r.randint(92, 184)), "DBP": lambda: str(r.randint(48, 104)),
            "RR": lambda: str(r.randint(12, 28)), "SAT": lambda: str(r.randint(86, 100)),
            "WT": lambda: f"{r.uniform(45, 130):.1f}", "MS": lambda: str(r.randint(2, 5)),
            "GCS": lambda: str(r.randint(8, 15)), "GRADE": lambda: str(r.randint(1, 4)),
            "MOCA": lambda: str(r.randint(14, 30)), "EDEMA": lambda: str(r.randint(1, 3)),
            "NA": lambda: str(r.randint(126, 146)), "K": lambda: f"{r.uniform(2.9, 5.8):.1f}",
            "CL": lambda: str(r.randint(95, 110)), "BICARB": lambda: str(r.randint(16, 31)),
            "BUN": lambda: str(r.randint(6, 64)), "CR": lambda: f"{r.uniform(0.5, 3.4):.2f}",
            "GLU": lambda: str(r.randint(68, 412)), "WBC": lambda: f"{r.uniform(2.1, 21):.1f}",
            "HGB": lambda: f"{r.uniform(7, 16.5):.1f}", "PLT": lambda: str(r.randint(45, 480)),
            "A1C": lambda: f"{r.uniform(5.2, 12.4):.1f}", "INR": lambda: f"{r.uniform(0.9, 4.2):.1f}",
            "TSH": lambda: f"{r.uniform(0.1, 9.8):.2f}", "TROP": lambda: f"{r.uniform(0, 0.9):.2f}",
            "BNP": lambda: str(r.randint(20, 3400)), "QTC": lambda: str(r.randint(390, 520)),
            "LACT": lambda: f"{r.uniform(0.6, 6):.1f}", "EF": lambda: str(r.choice(range(20, 70, 5))),
            "LDL": lambda: str(r.randint(50, 210)), "HDL": lambda: str(r.randint(28, 90)),
            "TG": lambda: str(r.randint(60, 480)), "ICD": lambda: r.choice(["E11.9", "I10", "I48.91", "G20", "N18.30", "J44.1"]),
            "TIME": lambda: f"{r.randint(8, 16) % 12 or 12}:{r.choice(['00', '15', '30', '45'])} {r.choice(['AM', 'PM'])}",
        }
        return simple[slot]()

    # -- building text
    def write(self, text, label=None):
        if label:
            self.entities.append({"start": self.length, "end": self.length + len(text), "label": label})
        self.parts.append(text)
        self.length += len(text)

    def sentence(self, template, sep=" "):
        if self.length:
            self.write(sep)
        start, pos = self.length, 0
        for m in SLOT.finditer(template):
            self.write(template[pos:m.start()])
            slot = m.group(1)
            if slot in ENTITY_SLOTS:
                self.write(self.value(slot), ENTITY_SLOTS[slot])
            else:
                self.write(self.fill(slot))
            pos = m.end()
        self.write(template[pos:])
        self.sentences.append((start, self.length))

    def template(self, section, phi=True):
        """A template of the section (phi=False: one without entity slots). Test favours held-out ones."""
        shared, held = TEMPLATES[section]
        if not phi:
            shared, held = [t for t in shared if not has_phi(t)], [t for t in held if not has_phi(t)]
            if not shared and not held:
                section, shared, held = "exam", [t for t in TEMPLATES["exam"][0] if not has_phi(t)], []
        for _ in range(6):  # avoid repeating a sentence within a note
            if self.split == "test" and held and (not shared or self.rng.random() < 0.35):
                choice = self.rng.choice(held)
            else:
                choice = self.rng.choice(shared)
            if choice not in self.used:
                break
        self.used.append(choice)
        return choice

    def words(self):
        return len("".join(self.parts).split())

    def result(self, note_id):
        return {"id": note_id, "text": "".join(self.parts), "entities": self.entities}, self.sentences, self.used


def ascii_name(s):
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z]", "", s).lower() or "user"


def make_note(rng, split, note_id):
    note = Note(rng, split)
    kind = rng.choices(["progress", "discharge", "phone", "letter", "nophi"], [38, 25, 12, 13, 12])[0]
    if kind == "nophi":
        for section in rng.sample(["exam", "labs", "meds", "assessment", "plan"], rng.randint(2, 4)):
            note.sentence(HEADINGS[section], sep="\n\n")
            for _ in range(rng.randint(1, 4)):
                note.sentence(note.template(section, phi=False))
        return note.result(note_id)
    if kind == "phone":
        for _ in range(rng.randint(0, 1)):
            note.sentence(note.template("header"), sep="\n")
        note.sentence(HEADINGS["phone"], sep="\n\n")
        for _ in range(rng.randint(2, 5)):
            note.sentence(note.template("phone"))
        return note.result(note_id)
    for _ in range(rng.randint(1, 3) if kind != "letter" else rng.randint(0, 1)):
        note.sentence(note.template("header"), sep="\n")
    if kind == "letter":
        note.sentence(rng.choice(["Dear Dr. {DR},", "Dear {DR},", "To the {SPECIALTY} team at {HOSP}:"]), sep="\n\n")
        sections = ["letter", "hpi", "assessment", "plan"]
        target = rng.randint(80, 220)
    elif kind == "progress":
        sections = ["hpi", "meds", "exam", "labs", "assessment", "plan"]
        target = rng.randint(60, 250)
    else:
        sections = ["hpi", "history", "meds", "exam", "labs", "assessment", "plan", "discharge"]
        target = rng.randint(300, 600)
    # Sentences per section sized so that the note lands near its target length.
    per_section = max(1, round(target / 13 / len(sections)))
    for section in sections:
        if section in HEADINGS and (kind != "letter" or section != "letter"):
            note.sentence(HEADINGS[section], sep="\n\n")
        for _ in range(rng.randint(max(1, per_section - 1), per_section + 1)):
            note.sentence(note.template(section, phi=rng.random() < 0.55))
    while note.words() < target * 0.9 and kind == "discharge":
        section = rng.choice(sections)
        note.sentence(note.template(section, phi=rng.random() < 0.5))
    if kind == "letter":
        note.sentence(rng.choice(["Sincerely, {DR}, MD, {HOSP}", "Best regards,\n{DR}, MD", "Kind regards, Dr. {DR}"]),
                      sep="\n\n")
    return note.result(note_id)


def generate(seed, sizes):
    """{split: [(note, sentences, templates used)]}: each split has its own stream, derived from the seed."""
    out = {}
    for split, n in sizes.items():
        rng = random.Random(f"{seed}-{split}")
        out[split] = [make_note(rng, split, f"{split}-{i:05d}") for i in range(n)]
    return out


def conll_lines(note, sentences):
    """token<TAB>tag lines, a blank line after each sentence."""
    text, starts, ends = note["text"], {}, {}
    for e in note["entities"]:
        starts[e["start"]] = e
        ends[e["end"]] = e
    lines = []
    for s, e in sentences:
        inside, line_count = None, 0
        for m in TOKEN.finditer(text, s, e):
            if m.start() in starts:
                inside = starts[m.start()]
                tag = "B-" + inside["label"]
            elif inside and m.start() < inside["end"]:
                tag = "I-" + inside["label"]
            else:
                inside, tag = None, "O"
            lines.append(f"{m.group(0)}\t{tag}")
            line_count += 1
            if inside and m.end() >= inside["end"]:
                inside = None
        if line_count:
            lines.append("")
    return lines


def write(out_dir, data, fmt):
    os.makedirs(out_dir, exist_ok=True)
    for split, notes in data.items():
        if fmt in ("jsonl", "both"):
            with open(os.path.join(out_dir, f"{split}.jsonl"), "w", encoding="utf-8") as f:
                for note, *_ in notes:
                    f.write(json.dumps(note, ensure_ascii=False) + "\n")
        if fmt in ("conll", "both"):
            with open(os.path.join(out_dir, f"{split}.conll"), "w", encoding="utf-8") as f:
                for note, sentences, _ in notes:
                    for line in conll_lines(note, sentences):
                        f.write(line + "\n")


def report(data):
    train_strings = {note["text"][e["start"]:e["end"]] for note, *_ in data.get("train", []) for e in note["entities"]}
    for split, notes in data.items():
        counts = {label: 0 for label in LABELS}
        words = sorted(len(note["text"].split()) for note, *_ in notes)
        unseen = total = 0
        for note, *_ in notes:
            for e in note["entities"]:
                counts[e["label"]] += 1
                total += 1
                unseen += note["text"][e["start"]:e["end"]] not in train_strings
        empty = sum(not note["entities"] for note, *_ in notes)
        long_notes = sum(w >= 300 for w in words)
        line = (f"{split}: {len(notes)} notes ({empty} without PHI, {long_notes} of 300+ words; words median "
                f"{words[len(words) // 2] if words else 0}, max {words[-1] if words else 0}), {total} entities: "
                + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if split != "train" and train_strings:
            names = [note["text"][e["start"]:e["end"]] for note, *_ in notes for e in note["entities"]
                     if e["label"] == "NAME"]
            new_names = sum(n not in train_strings for n in names)
            line += (f"; not in train: {unseen} ({100 * unseen / max(1, total):.0f}%) entity strings, "
                     f"{new_names} ({100 * new_names / max(1, len(names)):.0f}%) NAME strings")
        print(line)


# ---------------------------------------------------------------- self-check
def self_check():
    sizes = {"train": 120, "val": 20, "test": 60}
    data = generate(7, sizes)
    again = generate(7, sizes)
    assert [n for n, *_ in data["test"]] == [n for n, *_ in again["test"]], "not deterministic"
    held = {name for pool in ("female", "male", "surname") for name in POOLS[pool][1]}
    held_tpl = {t for shared, h in TEMPLATES.values() for t in h}
    for split in ("train", "val"):
        for note, *_ in data[split]:
            for e in note["entities"]:
                if e["label"] == "NAME":
                    words = set(re.findall(r"[\w']+", note["text"][e["start"]:e["end"]]))
                    assert not words & held, (split, note["text"][e["start"]:e["end"]])
    test_names = {w for note, *_ in data["test"] for e in note["entities"] if e["label"] == "NAME"
                  for w in re.findall(r"[\w']+", note["text"][e["start"]:e["end"]])}
    assert test_names & held, "test uses no held-out name"
    for split in ("train", "val"):
        assert not any(set(used) & held_tpl for _, _, used in data[split]), split
    assert any(set(used) & held_tpl for _, _, used in data["test"]), "test uses no held-out template"
    labels = {e["label"] for note, *_ in data["train"] for e in note["entities"]}
    assert labels == set(LABELS), labels
    assert any(not note["entities"] for note, *_ in data["train"]), "no note without PHI"
    assert any(len(note["text"].split()) >= 300 for note, *_ in data["train"]), "no long note"
    with tempfile.TemporaryDirectory() as tmp:
        write(tmp, data, "both")
        check_dir(tmp, set(LABELS), quiet=True)
        # The checker must catch broken spans: overlapping, unsorted, out of range, unknown label,
        # whitespace-padded, off a token boundary.
        note = next(n for n, *_ in data["train"] if len(n["entities"]) >= 2 and
                    n["text"][n["entities"][0]["start"] - 1] == " " and n["entities"][0]["end"] -
                    n["entities"][0]["start"] >= 2 and n["text"][n["entities"][0]["start"]].isalnum()
                    and n["text"][n["entities"][0]["start"] + 1].isalnum())
        e0, e1, rest = note["entities"][0], note["entities"][1], note["entities"][2:]
        for bad in ([dict(e0, end=e1["start"] + 1), e1] + rest, [e1, e0] + rest,
                    [e0, e1] + rest + [{"start": 0, "end": len(note["text"]) + 1, "label": "NAME"}],
                    [dict(e0, label="SSN"), e1] + rest, [dict(e0, start=e0["start"] - 1), e1] + rest,
                    [dict(e0, start=e0["start"] + 1), e1] + rest):
            os.makedirs(os.path.join(tmp, "bad"), exist_ok=True)
            with open(os.path.join(tmp, "bad", "train.jsonl"), "w", encoding="utf-8") as f:
                f.write(json.dumps(dict(note, entities=bad), ensure_ascii=False) + "\n")
            try:
                check_dir(os.path.join(tmp, "bad"), set(LABELS), quiet=True)
            except AssertionError:
                continue
            raise AssertionError("the checker accepted a broken span")
    for note, *_ in data["train"] + data["val"] + data["test"]:
        assert set(note) == {"id", "text", "entities"} and all(set(e) == {"start", "end", "label"}
                                                               for e in note["entities"]), note["id"]
    n_templates = sum(len(ts) for ts in SECTIONS.values())
    n_phi = sum(has_phi(t) for ts in SECTIONS.values() for t in ts)
    print(f"check passed: {sum(sizes.values())} notes, {n_templates} templates ({n_phi} with PHI slots, "
          f"{len(held_tpl)} held out for test), {len(SURNAMES)} surnames ({len(POOLS['surname'][1])} held out), "
          f"{len(FEMALE) + len(MALE)} first names")


def main():
    parser = argparse.ArgumentParser(description="Synthetic clinical notes with PHI spans (made-up data)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--format", choices=["jsonl", "conll", "both"], default="jsonl")
    parser.add_argument("--check", action="store_true", help="self-test on a small generated set and exit")
    options = parser.parse_args()
    if options.check:
        self_check()
        return
    if not options.out:
        parser.error("--out DIR is required (or --check)")
    data = generate(options.seed, {"train": options.train, "val": options.val, "test": options.test})
    write(options.out, data, options.format)
    report(data)
    print(f"wrote {options.format} -> {options.out} (synthetic, made-up names; seed {options.seed})")


if __name__ == "__main__":
    sys.exit(main())
