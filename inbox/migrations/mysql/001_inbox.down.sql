DROP TABLE IF EXISTS {{.Dead}};
DROP TABLE IF EXISTS {{.Sibling "_attempts"}};
DROP TABLE IF EXISTS {{.Sibling "_keys"}};
DROP TABLE IF EXISTS {{.Table}};
