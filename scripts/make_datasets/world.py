"""General-knowledge facts: countries (capital, continent, language, currency) and glossary definitions."""

from __future__ import annotations

# country, capital, continent, official language, currency
COUNTRIES = [
    ("France", "Paris", "Europe", "French", "the euro"),
    ("Germany", "Berlin", "Europe", "German", "the euro"),
    ("Italy", "Rome", "Europe", "Italian", "the euro"),
    ("Spain", "Madrid", "Europe", "Spanish", "the euro"),
    ("Portugal", "Lisbon", "Europe", "Portuguese", "the euro"),
    ("Poland", "Warsaw", "Europe", "Polish", "the złoty"),
    ("Sweden", "Stockholm", "Europe", "Swedish", "the Swedish krona"),
    ("Norway", "Oslo", "Europe", "Norwegian", "the Norwegian krone"),
    ("Greece", "Athens", "Europe", "Greek", "the euro"),
    ("Ireland", "Dublin", "Europe", "Irish and English", "the euro"),
    ("Japan", "Tokyo", "Asia", "Japanese", "the yen"),
    ("South Korea", "Seoul", "Asia", "Korean", "the won"),
    ("India", "New Delhi", "Asia", "Hindi and English", "the Indian rupee"),
    ("Thailand", "Bangkok", "Asia", "Thai", "the baht"),
    ("Vietnam", "Hanoi", "Asia", "Vietnamese", "the dong"),
    ("Indonesia", "Jakarta", "Asia", "Indonesian", "the rupiah"),
    ("Turkey", "Ankara", "Asia and Europe", "Turkish", "the Turkish lira"),
    ("Egypt", "Cairo", "Africa", "Arabic", "the Egyptian pound"),
    ("Kenya", "Nairobi", "Africa", "Swahili and English", "the Kenyan shilling"),
    ("Nigeria", "Abuja", "Africa", "English", "the naira"),
    ("Morocco", "Rabat", "Africa", "Arabic and Berber", "the dirham"),
    ("Ghana", "Accra", "Africa", "English", "the cedi"),
    ("Canada", "Ottawa", "North America", "English and French", "the Canadian dollar"),
    ("Mexico", "Mexico City", "North America", "Spanish", "the Mexican peso"),
    ("Cuba", "Havana", "North America", "Spanish", "the Cuban peso"),
    ("Brazil", "Brasília", "South America", "Portuguese", "the real"),
    ("Argentina", "Buenos Aires", "South America", "Spanish", "the Argentine peso"),
    ("Chile", "Santiago", "South America", "Spanish", "the Chilean peso"),
    ("Peru", "Lima", "South America", "Spanish and Quechua", "the sol"),
    ("Colombia", "Bogotá", "South America", "Spanish", "the Colombian peso"),
    ("Australia", "Canberra", "Oceania", "English", "the Australian dollar"),
    ("New Zealand", "Wellington", "Oceania", "English and Māori", "the New Zealand dollar"),
]

GLOSSARY = [
    (
        "photosynthesis",
        "Photosynthesis is the process plants, algae and some bacteria use to turn light into chemical energy. "
        "Using sunlight, they combine carbon dioxide and water into glucose and release oxygen as a by-product.",
    ),
    (
        "inflation",
        "Inflation is the general rise in prices over time, which means each unit of money buys less. "
        "Central banks usually try to keep it low and stable, often around two percent a year.",
    ),
    (
        "a database index",
        "A database index is a separate data structure, usually a B-tree, that lets the database "
        "find rows without scanning the whole table. It speeds up reads but makes writes slightly slower.",
    ),
    (
        "an API",
        "An API (application programming interface) is a set of rules that lets one program ask another for "
        "data or actions. Web APIs usually accept HTTP requests and answer with JSON.",
    ),
    (
        "machine learning",
        "Machine learning is a way of building software that learns patterns from examples instead "
        "of following hand-written rules. A model is trained on data and then used to make predictions.",
    ),
    (
        "overfitting",
        "Overfitting happens when a model memorises its training data instead of learning general "
        "patterns. It scores well on the examples it has seen and poorly on new ones; more data, regularisation or "
        "early stopping help.",
    ),
    (
        "a compiler",
        "A compiler translates source code written in a programming language into machine code or another "
        "lower-level form before the program runs.",
    ),
    (
        "DNS",
        "DNS, the Domain Name System, translates human-readable names such as example.com into the IP addresses "
        "computers use to reach each other. It works like a distributed phone book.",
    ),
    (
        "encryption",
        "Encryption scrambles data with a key so that only someone holding the right key can read it. "
        "It protects messages in transit and files at rest.",
    ),
    (
        "a black hole",
        "A black hole is a region of space where gravity is so strong that nothing, not even light, can "
        "escape. Most form when very massive stars collapse at the end of their lives.",
    ),
    (
        "the water cycle",
        "The water cycle is the continuous movement of water on Earth. Water evaporates, condenses "
        "into clouds, falls as rain or snow, and flows back to rivers and oceans.",
    ),
    (
        "a recession",
        "A recession is a significant decline in economic activity lasting more than a few months. "
        "It is often defined as two consecutive quarters of falling GDP.",
    ),
    (
        "version control",
        "Version control records changes to files over time so you can see who changed what, go back "
        "to earlier versions and work on the same code in parallel. Git is the most widely used system.",
    ),
    (
        "latency",
        "Latency is the delay between a request and its response. In networking it is usually measured in "
        "milliseconds.",
    ),
    (
        "a vaccine",
        "A vaccine trains the immune system to recognise a germ without causing the disease. It contains a "
        "weakened, inactivated or partial form of the germ, or instructions for making one of its proteins.",
    ),
    (
        "biodiversity",
        "Biodiversity is the variety of life in a place: the number of species, the genetic differences "
        "within them and the range of ecosystems they form.",
    ),
    (
        "a neural network",
        "A neural network is a model made of layers of simple units that each compute a weighted sum "
        "of their inputs. Training adjusts the weights so the network maps inputs to the right outputs.",
    ),
    (
        "compound interest",
        "Compound interest is interest earned on both the original amount and the interest already "
        "added. Over many years it makes savings grow much faster than simple interest.",
    ),
    (
        "a firewall",
        "A firewall is a system that filters network traffic according to rules, allowing trusted "
        "connections and blocking the rest.",
    ),
    (
        "plate tectonics",
        "Plate tectonics is the theory that Earth's outer shell is split into large plates that move "
        "slowly over the mantle. Their collisions and separations cause earthquakes, volcanoes and mountain ranges.",
    ),
    (
        "a container",
        "A container packages an application with its libraries and settings so it runs the same way on "
        "any machine. Containers share the host's kernel, which makes them lighter than virtual machines.",
    ),
    (
        "supply and demand",
        "Supply and demand describes how prices are set in a market. When demand rises and supply "
        "stays the same, prices go up; when supply rises and demand stays the same, prices fall.",
    ),
    (
        "a hash function",
        "A hash function turns data of any size into a fixed-size value. The same input always gives "
        "the same output, and good hash functions make collisions rare.",
    ),
    (
        "recursion",
        "Recursion is when a function solves a problem by calling itself on a smaller version of the same "
        "problem, until it reaches a simple base case.",
    ),
    (
        "the greenhouse effect",
        "The greenhouse effect is the warming of a planet's surface by gases such as carbon "
        "dioxide and methane, which let sunlight in but trap part of the heat radiated back.",
    ),
    (
        "a load balancer",
        "A load balancer spreads incoming requests across several servers so no single server is "
        "overwhelmed, and it stops sending traffic to servers that fail their health checks.",
    ),
    (
        "gradient descent",
        "Gradient descent is an optimisation method that repeatedly nudges a model's parameters in "
        "the direction that reduces its error. The learning rate sets the size of each step.",
    ),
    (
        "an operating system",
        "An operating system manages a computer's hardware and runs programs on top of it. It "
        "handles memory, files, processes and devices; Linux, Windows and macOS are examples.",
    ),
    (
        "a sonnet",
        "A sonnet is a poem of fourteen lines with a fixed rhyme scheme, usually written in iambic pentameter.",
    ),
    (
        "osmosis",
        "Osmosis is the movement of water through a semi-permeable membrane from a region of low solute "
        "concentration to one of high concentration.",
    ),
    (
        "a mortgage",
        "A mortgage is a loan used to buy property, with the property itself as security. The borrower "
        "repays it in instalments over many years, usually with interest.",
    ),
    (
        "caching",
        "Caching keeps copies of frequently used data in a faster place, such as memory, so later requests "
        "can be answered without repeating slow work.",
    ),
]
