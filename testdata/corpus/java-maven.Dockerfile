FROM maven:3.9-eclipse-temurin-21 AS build
WORKDIR /workspace
COPY pom.xml .
RUN --mount=type=cache,target=/root/.m2 mvn -B -q dependency:go-offline
COPY src ./src
RUN --mount=type=cache,target=/root/.m2 mvn -B -q package -DskipTests

FROM eclipse-temurin:21-jre
ARG JAR=/workspace/target/*.jar
COPY --from=build ${JAR} /opt/app.jar
ENV JAVA_OPTS="-XX:MaxRAMPercentage=75"
VOLUME /tmp
ENTRYPOINT ["sh", "-c", "exec java $JAVA_OPTS -jar /opt/app.jar"]
